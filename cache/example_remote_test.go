package cache_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// mapTier is a second tier in this process's memory, for the example only:
// package bridge is the real one (Redis, shared by every host).
type mapTier struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (t *mapTier) Get(_ context.Context, name, key string) ([]byte, time.Duration, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[name+":"+key]
	return v, 0, ok, nil
}

func (t *mapTier) Set(_ context.Context, name, key string, v []byte, _ time.Duration, _ []string, onlyIfAbsent bool) (bool, []byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.m[name+":"+key]; ok && onlyIfAbsent {
		return false, old, nil
	}
	t.m[name+":"+key] = append([]byte{}, v...)
	return true, v, nil
}

func (t *mapTier) Del(_ context.Context, name, key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, name+":"+key)
	return nil
}

func (t *mapTier) InvalidateTag(context.Context, string, string) ([]string, error) { return nil, nil }
func (t *mapTier) Clear(context.Context, string) error                             { return nil }
func (t *mapTier) LocalWrites() bool                                               { return false }

// A distributed cache reads its second tier on a miss and writes it first.
// The tier's invalidations (package bridge's tracking, in the master) reach
// the arena through Invalidate.
func ExampleSpace_Distribute() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	tier := &mapTier{m: map[string][]byte{"users:42": []byte("Ada, from the tier")}}
	sp.Distribute("users", tier)
	sp.BeginTracking() // the tier's changes reach Invalidate (package bridge: its tracking connection)
	users, _ := sp.Use("users", cache.Options{})

	v, _ := users.Get(context.Background(), "42", nil) // a miss: the tier has it
	fmt.Println(string(v))

	users.Set(context.Background(), "42", []byte("Grace"), cache.SetOptions{}) // the tier first
	fmt.Println(string(tier.m["users:42"]))

	tier.m["users:42"] = []byte("Grace Hopper")  // another host's write...
	users.Invalidate(context.Background(), "42") // ...and its invalidation
	v, _ = users.Get(context.Background(), "42", nil)
	fmt.Println(string(v))
	// Output:
	// Ada, from the tier
	// Grace
	// Grace Hopper
}
