package bench

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/maypok86/otter/v2"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// BenchmarkCacheHitRatio replays one request trace per workload into each
// peer and reports the share of requests that hit ("hit%"); a miss inserts
// the key. It measures a policy, not time: run it with -benchtime 1x (each
// iteration replays the whole trace into a fresh cache, and the figure is
// the last iteration's).
//
// Traces (hitRatioKeys keys, hitRatioRequests requests, generated once from a
// fixed seed and replayed identically to every peer):
//
//   - zipf0.9, zipf1.0: independent requests, key rank r drawn with
//     probability proportional to 1/r^s (zipfGen: inversion of the exact
//     CDF, correct for any s > 0; math/rand/v2's Zipf needs s > 1), ranks
//     mapped to keys by a fixed permutation; the cache at 0.5% and 5% of
//     the key space.
//   - scan: the zipf0.9 requests interleaved with one-time sequential
//     scans: after every C Zipf requests (C the cache's size in entries, 5%
//     of the key space) come C keys never requested before or after.
//
// Sizes: cluster2's caches are bounded by bytes, the peers' by entries.
// Values are a fixed hitRatioValue bytes (cluster2's record: 1 KiB), and
// sizedCluster2 searches for the smallest space (SpaceOptions.Bytes, default
// shard count) whose steady state holds at least C entries: it fills a trial
// space with 3·C distinct keys, each set and read once (so that any policy
// keeps them in its main part), and reads Stats().Entries. The peers are
// then given exactly the entries that space holds (reported as "entries").
//
// Peers: cluster2 (the shared cache in an arena, one process), otter v2
// (W-TinyLFU; its figure moves by up to a point from run to run: its sketch
// is seeded at random), and lru (a plain LRU: container/list and a map,
// lruCache below).
func BenchmarkCacheHitRatio(b *testing.B) {
	for _, w := range hitRatioWorkloads {
		b.Run(w.name, func(b *testing.B) {
			tr := w.trace()
			target := int(w.frac * hitRatioKeys)
			bytes, held := sizedCluster2(b, target)
			replay := func(b *testing.B, open func() (hitRatioPeer, func())) {
				var hits int
				for b.Loop() {
					p, done := open()
					hits = 0
					val := make([]byte, hitRatioValue)
					for _, k := range tr.reqs {
						key := hitRatioKey(k)
						if p.get(key) {
							hits++
						} else {
							p.set(key, val)
						}
					}
					done()
				}
				b.ReportMetric(100*float64(hits)/float64(len(tr.reqs)), "hit%")
				b.ReportMetric(float64(held), "entries")
			}
			b.Run("cluster2", func(b *testing.B) {
				replay(b, func() (hitRatioPeer, func()) {
					s := openSizedCluster2(b, bytes)
					return s, s.close
				})
			})
			b.Run("otter", func(b *testing.B) {
				replay(b, func() (hitRatioPeer, func()) {
					return otterPeer{otter.Must(&otter.Options[string, []byte]{MaximumSize: held})}, func() {}
				})
			})
			b.Run("lru", func(b *testing.B) {
				replay(b, func() (hitRatioPeer, func()) { return newLRU(held), func() {} })
			})
		})
	}
}

const (
	hitRatioKeys     = 200_000
	hitRatioRequests = 2_000_000
	hitRatioValue    = 1024 - 40 - 16 // a cluster2 record of 1 KiB: 40-byte header, 16-byte key
)

type hitRatioWorkload struct {
	name string
	s    float64 // Zipf exponent
	frac float64 // cache size / key space
	scan bool    // interleave one-time scans
}

var hitRatioWorkloads = []hitRatioWorkload{
	{"zipf0.9-0.5pct", 0.9, 0.005, false},
	{"zipf0.9-5pct", 0.9, 0.05, false},
	{"zipf1.0-0.5pct", 1.0, 0.005, false},
	{"zipf1.0-5pct", 1.0, 0.05, false},
	{"scan-zipf0.9-5pct", 0.9, 0.05, true},
}

type hitRatioTrace struct{ reqs []uint32 }

var traceCache sync.Map // workload name → *hitRatioTrace: one trace per workload per process

// trace returns w's request trace, the same on every call.
func (w hitRatioWorkload) trace() *hitRatioTrace {
	if t, ok := traceCache.Load(w.name); ok {
		return t.(*hitRatioTrace)
	}
	r := rand.New(rand.NewPCG(7, 11))
	z := newZipfGen(hitRatioKeys, w.s)
	perm := r.Perm(hitRatioKeys)
	c := int(w.frac * hitRatioKeys)
	reqs := make([]uint32, 0, hitRatioRequests)
	fresh := uint32(hitRatioKeys) // scan keys: never requested twice
	for n := 1; len(reqs) < hitRatioRequests; n++ {
		reqs = append(reqs, uint32(perm[z.next(r)]))
		if w.scan && n%c == 0 {
			for range c {
				reqs = append(reqs, fresh)
				fresh++
			}
		}
	}
	t := &hitRatioTrace{reqs[:hitRatioRequests]}
	traceCache.Store(w.name, t)
	return t
}

// zipfGen draws ranks 0..n-1 with P(r) ∝ 1/(r+1)^s by inverting the exact
// cumulative distribution (binary search over n float64s): exact for any
// s > 0, which math/rand/v2's Zipf (s > 1 only) is not.
type zipfGen struct{ cdf []float64 }

func newZipfGen(n int, s float64) *zipfGen {
	cdf := make([]float64, n)
	sum := 0.0
	for i := range cdf {
		sum += math.Pow(float64(i+1), -s)
		cdf[i] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	cdf[n-1] = 1
	return &zipfGen{cdf}
}

func (z *zipfGen) next(r *rand.Rand) int { return sort.SearchFloat64s(z.cdf, r.Float64()) }

// hitRatioKey is the 16-byte key of trace key k.
func hitRatioKey(k uint32) string { return fmt.Sprintf("key-%012d", k) }

type hitRatioPeer interface {
	get(key string) bool
	set(key string, val []byte)
}

// ---- cluster2, sized by bytes ----

type sizedC2 struct {
	a   *shm.Arena
	sp  *cache.Space
	c   *cache.Cache
	buf []byte
}

func openSizedCluster2(b *testing.B, bytes int64) *sizedC2 {
	a, err := shm.Create(shm.Options{Size: bytes + bytes/4 + 4<<20, Slots: 4})
	if err != nil {
		b.Fatal(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: bytes})
	if err != nil {
		a.Close()
		b.Fatal(err)
	}
	c, err := sp.Use("hitratio", cache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return &sizedC2{a: a, sp: sp, c: c, buf: make([]byte, 0, hitRatioValue)}
}

func (s *sizedC2) get(key string) bool {
	var ok bool
	s.buf, ok, _ = s.c.GetInto(s.buf[:0], key)
	return ok
}

func (s *sizedC2) set(key string, val []byte) {
	if _, err := s.c.Set(context.Background(), key, val, cache.SetOptions{}); err != nil {
		panic(err)
	}
}

func (s *sizedC2) close() { s.sp.Close(); s.a.Close() }

// heldBy returns the entries a space of the given bytes holds in its steady
// state: 3·target distinct keys, each set and then read once.
func heldBy(b *testing.B, bytes int64, target int) int {
	s := openSizedCluster2(b, bytes)
	defer s.close()
	val := make([]byte, hitRatioValue)
	for i := range 3 * target {
		k := fmt.Sprintf("fill-%011d", i)
		s.set(k, val)
		s.get(k)
	}
	return int(s.c.Stats().Entries)
}

var sizedCache sync.Map // target → [2]int64{bytes, held}

// sizedCluster2 returns the smallest space size (to 16 KiB) that holds at
// least target entries of hitRatioValue bytes, and what it holds.
func sizedCluster2(b *testing.B, target int) (int64, int) {
	if v, ok := sizedCache.Load(target); ok {
		p := v.([2]int64)
		return p[0], int(p[1])
	}
	lo, hi := int64(1<<20), int64(1<<20)
	for heldBy(b, hi, target) < target {
		lo, hi = hi, hi*2
	}
	for hi-lo > 16<<10 {
		mid := (lo + hi) / 2 &^ (4<<10 - 1)
		if heldBy(b, mid, target) >= target {
			hi = mid
		} else {
			lo = mid
		}
	}
	held := heldBy(b, hi, target)
	sizedCache.Store(target, [2]int64{hi, int64(held)})
	return hi, held
}

// ---- otter ----

type otterPeer struct{ c *otter.Cache[string, []byte] }

func (p otterPeer) get(key string) bool {
	_, ok := p.c.GetIfPresent(key)
	return ok
}
func (p otterPeer) set(key string, val []byte) { p.c.Set(key, val) }

// ---- lru: a plain LRU of at most cap entries ----

type lruCache struct {
	cap int
	l   *list.List // front: most recently used
	m   map[string]*list.Element
}

func newLRU(n int) *lruCache {
	return &lruCache{cap: n, l: list.New(), m: make(map[string]*list.Element, n)}
}

func (c *lruCache) get(key string) bool {
	e, ok := c.m[key]
	if ok {
		c.l.MoveToFront(e)
	}
	return ok
}

func (c *lruCache) set(key string, _ []byte) {
	if e, ok := c.m[key]; ok {
		c.l.MoveToFront(e)
		return
	}
	if c.l.Len() >= c.cap {
		old := c.l.Back()
		delete(c.m, old.Value.(string))
		c.l.Remove(old)
	}
	c.m[key] = c.l.PushFront(key)
}
