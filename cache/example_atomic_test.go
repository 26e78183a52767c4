package cache_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// A cluster-wide fixed-window rate limiter: one counter per client and
// window, created by the window's first request with the window's end as its
// deadline. Every worker process adds to the same counter, so the limit holds
// for the cluster, not per process (what fasthttp's prefork cannot do with an
// in-process limiter).
func ExampleCache_Add_fixedWindow() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	limits, _ := sp.Use("ratelimit", cache.Options{})

	const limit, window = 3, time.Hour
	allow := func(ctx context.Context, client string) bool {
		start := time.Now().Truncate(window)
		key := fmt.Sprintf("%s@%d", client, start.Unix())
		n, err := limits.Add(ctx, key, 1, cache.AddOptions{ExpireAt: start.Add(window)})
		return err == nil && n <= limit
	}
	for range 5 {
		fmt.Print(allow(context.Background(), "10.0.0.7"), " ")
	}
	fmt.Println()
	// Output: true true true false false
}

// A cluster-wide token bucket: the bucket's state (tokens in thousandths,
// and the time of the last refill) is one value, updated with
// CompareAndSwap so that concurrent takers in any process never spend the
// same token twice; SetIfAbsent creates a full bucket once.
func ExampleCache_CompareAndSwap_tokenBucket() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	buckets, _ := sp.Use("buckets", cache.Options{})

	const capacity, perToken = 3, time.Minute // 3 tokens, one more per minute
	encode := func(milli int64, at time.Time) []byte {
		return binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, uint64(milli)), uint64(at.UnixNano()))
	}
	take := func(ctx context.Context, key string) (bool, error) {
		for {
			old, err := buckets.Get(ctx, key, nil)
			if errors.Is(err, cache.ErrNotFound) {
				// A new bucket, full but for the token this call takes.
				if ok, err := buckets.SetIfAbsent(ctx, key, encode((capacity-1)*1000, time.Now()), cache.SetOptions{}); ok || err != nil {
					return ok, err
				}
				continue // another process created it first
			}
			if err != nil {
				return false, err
			}
			milli, at := int64(binary.LittleEndian.Uint64(old)), time.Unix(0, int64(binary.LittleEndian.Uint64(old[8:])))
			now := time.Now()
			milli = min(milli+int64(now.Sub(at)*1000/perToken), capacity*1000)
			if milli < 1000 {
				return false, nil
			}
			ok, err := buckets.CompareAndSwap(ctx, key, old, encode(milli-1000, now), cache.SetOptions{})
			if err != nil || ok {
				return ok, err
			}
			// Another taker changed the bucket first: read it again.
		}
	}
	for range 5 {
		ok, _ := take(context.Background(), "client-7")
		fmt.Print(ok, " ")
	}
	fmt.Println()
	// Output: true true true false false
}

// Tags group entries for invalidation: one call removes every entry of a
// tag, in every process, and watchers hear each removal.
func ExampleCache_InvalidateTag() {
	a, _ := shm.Create(shm.Options{Size: 16 << 20})
	defer a.Close()
	sp, _ := cache.Setup(context.Background(), a, cache.SpaceOptions{})
	defer sp.Close()
	pages, _ := sp.Use("pages", cache.Options{})
	ctx := context.Background()

	pages.Set(ctx, "/product/1", []byte("..."), cache.SetOptions{Tags: []string{"product:1", "catalog"}})
	pages.Set(ctx, "/product/2", []byte("..."), cache.SetOptions{Tags: []string{"product:2", "catalog"}})
	pages.Set(ctx, "/about", []byte("..."), cache.SetOptions{})

	n, _ := pages.InvalidateTag(ctx, "product:1") // product 1 changed
	fmt.Println("removed", n)
	n, _ = pages.InvalidateTag(ctx, "catalog") // the catalog changed
	fmt.Println("removed", n)
	n, _ = pages.Clear(ctx)
	fmt.Println("cleared", n)
	// Output:
	// removed 1
	// removed 1
	// cleared 1
}
