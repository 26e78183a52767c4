package bench

import (
	"context"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// BenchmarkCacheHitCPU: fresh hits on 1,000 keys, one goroutine, by
// GetInto and by Get with a loader, in a cache without loader options, in
// one with StaleFor only and in one with all of them (StaleFor,
// FailSafeFor, RefreshAhead 0.1, NotFoundExpire; entries live an hour, so
// no hit is in the refresh-ahead window): the figure that stale serving
// adds nothing to a fresh hit (GetInto never serves stale values, so only
// Get's figures can differ).
// Besides ns/op it reports cpu-ns/op, the benchmark thread's own CPU time
// per hit (getrusage RUSAGE_THREAD), which a loaded host inflates much less
// than the wall clock: a thread waiting for a processor uses none.
func BenchmarkCacheHitCPU(b *testing.B) {
	for _, tc := range hitCPUCases {
		b.Run(tc.name, func(b *testing.B) { hitCPU(b, tc.opts, tc.get) })
	}
}

var hitCPUCases = []struct {
	name string
	opts cache.Options
	get  bool // Get with a loader, else GetInto
}{
	{"GetInto", cache.Options{Expire: time.Hour}, false},
	{"Get", cache.Options{Expire: time.Hour}, true},
	{"Get+StaleFor", cache.Options{Expire: time.Hour, StaleFor: time.Minute}, true},
	{"Get+loader-options", cache.Options{Expire: time.Hour, StaleFor: time.Minute, FailSafeFor: time.Hour, // stale-only
		RefreshAhead: 0.1, NotFoundExpire: time.Second}, true}, // stale-only
}

func hitCPU(b *testing.B, opts cache.Options, get bool) {
	keys := benchKeys(1000)
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(keys))
	a, err := shm.Create(shm.Options{Size: 24 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	c, err := sp.Use("bench", opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range keys {
		c.Set(ctx, k, benchValue, cache.SetOptions{})
	}
	loader := func(context.Context, string) ([]byte, error) {
		b.Fatal("a fresh hit called its loader")
		return nil, nil
	}
	buf := make([]byte, 0, valueSize)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	cpu0 := threadCPU()
	b.ResetTimer()
	i, n := 0, 0
	for b.Loop() {
		k := keys[order[i]]
		if get {
			if _, err := c.Get(ctx, k, loader); err != nil {
				b.Fatal(err)
			}
		} else if buf, _, _ = c.GetInto(buf[:0], k); len(buf) != valueSize {
			b.Fatal("miss")
		}
		if i++; i == len(order) {
			i = 0
		}
		n++
	}
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(n), "cpu-ns/op")
}

// threadCPU is the calling thread's CPU time, user and system, in ns.
func threadCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
