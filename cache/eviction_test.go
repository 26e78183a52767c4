package cache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// evictionSpace is a 1 MiB space of two shards (the smallest a space is):
// every test below fills it many times over.
func evictionSpace(t *testing.T) (*shm.Arena, *cache.Space, *cache.Cache) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 1 << 20, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); a.Close() })
	c, err := sp.Use("evict", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a, sp, c
}

// A full cache keeps serving sets of mixed sizes (1 byte to MaxValueLen, a
// quarter of a shard's heap): every Set is stored and reads back at once,
// none is refused for fragmentation, and the cache never wipes itself: once
// full, the live bytes never fall below a third of the heaps (the APCu
// failure: a full cache that empties itself).
func TestFullCacheServesMixedSizes(t *testing.T) {
	_, sp, c := evictionSpace(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	max := sp.MaxValueLen()
	heaps := int64(2 * 4 * (max + 40 + cache.MaxKeyLen)) // two shards, MaxValueLen is a quarter of a heap
	full := false
	var minBytes int64 = 1 << 62
	for i := range 6000 {
		var n int
		switch r := rng.IntN(100); {
		case r < 60:
			n = 1 + rng.IntN(200)
		case r < 95:
			n = 1 + rng.IntN(8<<10)
		default:
			n = 1 + rng.IntN(max)
		}
		key := "k" + strconv.Itoa(i)
		if i%4 == 0 && i > 0 { // an overwrite of a recent key
			key = "k" + strconv.Itoa(i-1-rng.IntN(min(i, 50)))
		}
		v := make([]byte, n)
		v[0], v[n-1] = byte(i), byte(i>>8)
		if ok, err := c.Set(ctx, key, v, cache.SetOptions{}); err != nil || !ok {
			t.Fatalf("set %d (%d bytes) = %v, %v; a full cache stores every value up to MaxValueLen", i, n, ok, err)
		}
		got, ok, err := c.GetInto(nil, key)
		if err != nil || !ok || len(got) != n || got[0] != v[0] || got[n-1] != v[n-1] {
			t.Fatalf("set %d (%d bytes): read back %d bytes, %v, %v", i, n, len(got), ok, err)
		}
		st := c.Stats()
		if st.Evictions > 0 {
			full = true
		}
		if full {
			minBytes = min(minBytes, st.Bytes)
			if st.Bytes < heaps/3 {
				t.Fatalf("set %d: the full cache holds %d bytes of %d (%d entries): it wiped itself", i, st.Bytes, heaps, st.Entries)
			}
		}
	}
	if !full {
		t.Fatal("the cache never filled: the test proves nothing")
	}
	if err := sp.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v; live bytes at least %d of %d once full", c.Stats(), minBytes, heaps)
}

// A hot set survives a scan: 100 keys read a few times each stay cached
// while another process writes 30 times the cache's capacity of keys that
// are never read (S3-FIFO: the scan passes through the small log and out,
// the hot keys were promoted to the main log and stay). Under the CLOCK
// with sampled hits it replaced, most of them were gone.
func TestHotSetSurvivesScan(t *testing.T) {
	a, sp, c := evictionSpace(t)
	ctx := context.Background()
	val := make([]byte, 200)
	for i := range 100 {
		if _, err := c.Set(ctx, "hot"+strconv.Itoa(i), val, cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		for i := range 100 {
			if _, ok, _ := c.GetInto(nil, "hot"+strconv.Itoa(i)); !ok {
				t.Fatalf("hot%d missing before the scan", i)
			}
		}
	}
	scan := 30 * (1 << 20) / 256 // 30 MiB of 256-byte records through a 1 MiB space
	cmd := xtesting.Command(t, "scan", []*os.File{a.File()}, "SCAN_KEYS="+strconv.Itoa(scan))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scanner: %v", err)
	}
	st := c.Stats()
	if st.Evictions < uint64(scan)/2 {
		t.Fatalf("%d evictions for a scan of %d keys: the scan did not fill the cache", st.Evictions, scan)
	}
	lost := 0
	for i := range 100 {
		if _, ok, _ := c.GetInto(nil, "hot"+strconv.Itoa(i)); !ok {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of 100 hot keys lost to a scan (%+v)", lost, st)
	}
	if err := sp.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// childScan sets SCAN_KEYS keys of 200 bytes once each, never reading them.
func childScan() {
	_, sp := childSpace()
	c, err := sp.Use("evict", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	n, _ := strconv.Atoi(os.Getenv("SCAN_KEYS"))
	val := make([]byte, 200)
	for i := range n {
		if _, err := c.Set(context.Background(), fmt.Sprint("scan", i), val, cache.SetOptions{}); err != nil {
			fail(3, "set %d: %v", i, err)
		}
	}
	sp.Close()
}
