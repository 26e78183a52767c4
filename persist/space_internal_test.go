package persist

import (
	"context"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// newSpace returns a cache space of 8 MiB in a fresh 16 MiB arena, both
// closed when the test ends (the white-box tests' twin of persist_test's
// space helper).
func newSpace(t *testing.T) *cache.Space {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}
