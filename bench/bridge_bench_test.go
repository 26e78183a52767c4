package bench

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/redistest"
	"github.com/cluster2/cluster2/shm"
)

// A bridged site: one host's arena and cache space with its bridge to a
// shared Redis, tracking into it (two in one process stand for two hosts).
type bridgedSite struct {
	sp *cache.Space
	br *bridge.Bridge
	c  *cache.Cache
}

func newBridgedSite(b *testing.B, srv *redistest.Server, distributed bool) *bridgedSite {
	a, err := shm.Create(shm.Options{Size: 24 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	s := &bridgedSite{sp: sp}
	if distributed {
		if s.br, err = bridge.Open(bridge.Config{Addr: srv.Addr(), Caches: []string{"bench"}, Timeout: 5 * time.Second}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.br.Close() })
		if err := s.br.Attach(sp); err != nil {
			b.Fatal(err)
		}
	}
	if s.c, err = sp.Use("bench", cache.Options{Expire: time.Hour}); err != nil {
		b.Fatal(err)
	}
	if distributed {
		s.br.Track(s.br.Target(sp))
		for !s.br.Up() {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return s
}

// warm makes every key a local hit: a distributed cache's Set goes to Redis
// and drops the key, and the Get after it may be cancelled by the Set's own
// invalidation, so Get until GetInto finds it.
func (s *bridgedSite) warm(b *testing.B, keys []string) {
	ctx := context.Background()
	for _, k := range keys {
		if _, err := s.c.Set(ctx, k, benchValue, cache.SetOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	fail := func(context.Context, string) ([]byte, error) {
		b.Fatal("the loader ran: Redis lost a key")
		return nil, nil
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		missing := 0
		for _, k := range keys {
			if _, ok, _ := s.c.GetInto(nil, k); !ok {
				missing++
				s.c.Get(ctx, k, fail)
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d keys still miss after 30 s", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkBridgeHit: a hit on 1,000 keys, one goroutine, in a distributed
// cache (bridged to Redis, tracking on) against a local one (GetInto and
// Get with a loader: the hit path must not change), against rueidis's own
// client-side cache hit (DoCache with OPTIN tracking, in this process), and
// against a Redis GET over loopback TCP (rueidis Do). Reports cpu-ns/op too
// (the thread's CPU time per op, see CacheHitCPU).
func BenchmarkBridgeHit(b *testing.B) {
	srv := redistest.Start(b)
	keys := benchKeys(1000)
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(keys))
	local, dist := newBridgedSite(b, srv, false), newBridgedSite(b, srv, true)
	local.warm(b, keys)
	dist.warm(b, keys)
	ctx := context.Background()
	loader := func(context.Context, string) ([]byte, error) { b.Fatal("a hit called its loader"); return nil, nil }
	loop := func(b *testing.B, op func(k string)) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		cpu0 := threadCPU()
		i, n := 0, 0
		for b.Loop() {
			op(keys[order[i]])
			if i++; i == len(order) {
				i = 0
			}
			n++
		}
		b.ReportMetric(float64(threadCPU()-cpu0)/float64(n), "cpu-ns/op")
	}
	buf := make([]byte, 0, valueSize)
	for _, s := range []struct {
		name string
		site *bridgedSite
	}{{"local", local}, {"distributed", dist}} {
		b.Run(s.name+"/GetInto", func(b *testing.B) {
			loop(b, func(k string) {
				if buf, _, _ = s.site.c.GetInto(buf[:0], k); len(buf) != valueSize {
					b.Fatal("miss")
				}
			})
		})
		b.Run(s.name+"/Get", func(b *testing.B) {
			loop(b, func(k string) {
				if _, err := s.site.c.Get(ctx, k, loader); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	csc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, ForceSingleClient: true})
	if err != nil {
		b.Fatal(err)
	}
	defer csc.Close()
	for _, k := range keys {
		csc.Do(ctx, csc.B().Set().Key("csc:"+k).Value(rueidis.BinaryString(benchValue)).Build())
		csc.DoCache(ctx, csc.B().Get().Key("csc:"+k).Cache(), time.Hour)
	}
	b.Run("rueidis-client-side-cache", func(b *testing.B) {
		loop(b, func(k string) {
			if v, err := csc.DoCache(ctx, csc.B().Get().Key("csc:"+k).Cache(), time.Hour).AsBytes(); err != nil || len(v) != valueSize {
				b.Fatal(err)
			}
		})
	})
	b.Run("redis-GET", func(b *testing.B) {
		loop(b, func(k string) {
			if v, err := csc.Do(ctx, csc.B().Get().Key("csc:"+k).Build()).AsBytes(); err != nil || len(v) != valueSize {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkBridgeInvalidation: the time from the start of A's Set of a key
// to B's arena losing it (B's bridge received Redis's invalidation and
// dropped the entry), two hosts in one process on one Redis over loopback
// TCP. Each op is one sample: B holds the key, A sets it, B spins on
// GetInto until it misses. Reports p50-µs, p99-µs and set-µs (A's Set
// itself: Redis's round trip and the local drop).
func BenchmarkBridgeInvalidation(b *testing.B) {
	srv := redistest.Start(b)
	a, bb := newBridgedSite(b, srv, true), newBridgedSite(b, srv, true)
	ctx := context.Background()
	fail := func(context.Context, string) ([]byte, error) { b.Fatal("the loader ran"); return nil, nil }
	var lat, set []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		k := "inv-" + strconv.Itoa(i%64)
		i++
		if _, err := a.c.Set(ctx, k, benchValue, cache.SetOptions{}); err != nil {
			b.Fatal(err)
		}
		for { // B holds the key (its load may be cancelled by the Set's invalidation)
			if _, ok, _ := bb.c.GetInto(nil, k); ok {
				break
			}
			bb.c.Get(ctx, k, fail)
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		t0 := time.Now()
		if _, err := a.c.Set(ctx, k, benchValue, cache.SetOptions{}); err != nil {
			b.Fatal(err)
		}
		set = append(set, time.Since(t0))
		for {
			if _, ok, _ := bb.c.GetInto(nil, k); !ok {
				break
			}
			runtime.Gosched()
		}
		lat = append(lat, time.Since(t0))
	}
	pct := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(float64(len(s))*p))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(lat, 0.5), "p50-µs")
	b.ReportMetric(pct(lat, 0.99), "p99-µs")
	b.ReportMetric(pct(set, 0.5), "set-µs")
}
