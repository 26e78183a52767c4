package cache

import (
	"context"
	"testing"

	"github.com/cluster2/cluster2/shm"
)

// testCache returns a cache called name in a space of a 16 MiB arena set up
// with opts, closed at the end of the test (the internal tests' set-up).
func testCache(t *testing.T, opts SpaceOptions, name string) (*Space, *Cache) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	sp, err := Setup(context.Background(), a, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	c, err := sp.Use(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return sp, c
}
