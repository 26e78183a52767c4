package bench

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/cluster2/cluster2/cache"
)

// BenchmarkCacheAdd: add 1 to a counter, the rate limiter's operation (issue
// 16), in one goroutine and from every processor at once (parallel/...).
// Peers in the same run: Redis INCR over a unix socket (what a prefork
// server uses today for a cluster-wide counter; started by the benchmark,
// skipped without redis-server) and an in-process atomic.Int64 (the floor:
// no cross-process sharing, no TTL, one cache line). keys-1 adds to one
// counter (one shard lock, one bucket: the hot-key case), keys-1k spreads the
// adds over 1,000 counters.
func BenchmarkCacheAdd(b *testing.B) {
	type adder struct {
		name string
		open func(b *testing.B) (add func(key string) int64, close func())
	}
	ctx := context.Background()
	adders := []adder{
		{"cluster2", func(b *testing.B) (func(string) int64, func()) {
			s := openCluster2(b, 1000).(*c2store)
			return func(key string) int64 {
				n, err := s.c.Add(ctx, key, 1, cache.AddOptions{})
				if err != nil {
					b.Fatal(err)
				}
				return n
			}, s.close
		}},
		{"redis-unix", func(b *testing.B) (func(string) int64, func()) {
			cmd, c := startRedis(b)
			return func(key string) int64 {
					n, err := c.Incr(ctx, key).Result()
					if err != nil {
						b.Fatal(err)
					}
					return n
				}, func() {
					c.Close()
					cmd.Process.Kill()
					cmd.Wait()
				}
		}},
		{"atomic-int64", func(b *testing.B) (func(string) int64, func()) {
			// One counter per key as a map of pointers, read-only while the
			// benchmark runs: the lookup a keyed counter needs, and the add.
			m := map[string]*atomic.Int64{}
			for _, k := range benchKeys(1000) {
				m[k] = new(atomic.Int64)
			}
			return func(key string) int64 { return m[key].Add(1) }, func() {}
		}},
	}
	for _, mode := range []string{"serial", "parallel"} {
		for _, nk := range []int{1, 1000} {
			keys := benchKeys(nk)
			name := "keys-1"
			if nk > 1 {
				name = "keys-1k"
			}
			for _, p := range adders {
				b.Run(mode+"/"+name+"/"+p.name, func(b *testing.B) {
					add, done := p.open(b)
					defer done()
					b.ReportAllocs()
					b.ResetTimer()
					if mode == "serial" {
						i := 0
						for b.Loop() {
							add(keys[i])
							if i++; i == len(keys) {
								i = 0
							}
						}
						return
					}
					var seed atomic.Int64
					b.RunParallel(func(pb *testing.PB) {
						i := int(seed.Add(37)) % len(keys)
						for pb.Next() {
							add(keys[i])
							if i++; i == len(keys) {
								i = 0
							}
						}
					})
				})
			}
		}
	}
}
