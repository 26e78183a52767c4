package cache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// A cluster's master sets the space up in its arena; every process (here, the
// same one) opens named caches in it. In a running cluster, cache.Use does
// this on the space cluster2.Listen attached.
func ExampleSpace_Use() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()

	users, _ := sp.Use("users", cache.Options{Expire: time.Minute})
	users.Set(context.Background(), "42", []byte(`{"name":"Ada"}`), cache.SetOptions{})
	v, _ := users.Get(context.Background(), "42", nil)
	fmt.Println(string(v))
	// Output: {"name":"Ada"}
}

// Get runs the loader once across the whole cluster for concurrent misses.
func ExampleCache_Get() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	c, _ := sp.Use("pages", cache.Options{})

	v, err := c.Get(context.Background(), "/home", func(ctx context.Context, key string) ([]byte, error) {
		return []byte("rendered " + key), nil // e.g. a database query
	})
	fmt.Println(string(v), err)
	st := c.Stats()
	fmt.Println("loads:", st.Loads, "misses:", st.Misses)
	// Output:
	// rendered /home <nil>
	// loads: 1 misses: 1
}

// GetInto is the allocation-free hot path: it appends to a buffer you reuse.
func ExampleCache_GetInto() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	c, _ := sp.Use("hot", cache.Options{})
	c.Set(context.Background(), "k", []byte("value"), cache.SetOptions{})

	buf := make([]byte, 0, 256)
	buf, ok, _ := c.GetInto(buf[:0], "k")
	fmt.Println(string(buf), ok)
	// Output: value true
}

// GetAppend is Get into a buffer you reuse: a hit allocates nothing, and a
// miss runs the loader once across the cluster, as Get does.
func ExampleCache_GetAppend() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	c, _ := sp.Use("pages", cache.Options{})
	render := func(ctx context.Context, key string) ([]byte, error) {
		return []byte("rendered " + key), nil // e.g. a database query
	}

	buf := make([]byte, 0, 256) // one per goroutine
	for range 3 {
		var err error
		buf, err = c.GetAppend(context.Background(), buf[:0], "/home", render)
		fmt.Println(string(buf), err)
	}
	st := c.Stats()
	fmt.Println("loads:", st.Loads, "hits:", st.Hits)
	// Output:
	// rendered /home <nil>
	// rendered /home <nil>
	// rendered /home <nil>
	// loads: 1 hits: 2
}

// Watch is told of every change of a key by any process, in order.
func ExampleCache_Watch() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	c, _ := sp.Use("config", cache.Options{})

	done := make(chan struct{})
	w := c.Watch("feature", func(ch cache.Change) {
		fmt.Println(ch.Op, ch.Key, string(ch.Value))
		if ch.Deleted() {
			close(done)
		}
	})
	defer c.Unwatch(w)
	c.Set(context.Background(), "feature", []byte("on"), cache.SetOptions{})
	c.Del(context.Background(), "feature")
	<-done
	// Output:
	// set feature on
	// del feature
}

// The loader options: an expired price is served at once for a minute while
// one process reloads it (StaleFor), kept for an hour to stand in for a
// failing backend (FailSafeFor), waited for 100 ms at most when kept
// (SoftTimeout), and a product the backend does not know is remembered for
// ten seconds (NotFoundExpire). Here the backend is down.
func ExampleOptions_failSafe() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	prices, _ := sp.Use("prices", cache.Options{Expire: time.Minute, StaleFor: time.Minute, FailSafeFor: time.Hour,
		SoftTimeout: 100 * time.Millisecond, NotFoundExpire: 10 * time.Second})
	ctx := context.Background()

	// A price set a while ago, past its time to live now.
	prices.Set(ctx, "sku-1", []byte("9.99"), cache.SetOptions{ExpireAt: time.Now().Add(time.Millisecond)})
	time.Sleep(2 * time.Millisecond)

	down := func(context.Context, string) ([]byte, error) { return nil, errors.New("backend down") }
	v, err := prices.Get(ctx, "sku-1", down) // stale: served at once, refreshed in the background
	fmt.Println(string(v), err)

	unknown := func(context.Context, string) ([]byte, error) { return nil, fmt.Errorf("sku-2: %w", cache.ErrNotFound) }
	_, err = prices.Get(ctx, "sku-2", unknown)
	_, err2 := prices.Get(ctx, "sku-2", unknown) // remembered: the loader is not called
	fmt.Println(errors.Is(err, cache.ErrNotFound), errors.Is(err2, cache.ErrNotFound), prices.Stats().NegativeHits)
	// Output:
	// 9.99 <nil>
	// true true 1
}
