package cache

import (
	"context"
	"sync/atomic"
	"time"
)

// statStripes is the number of stripes of a cache's hit and miss counters.
const statStripes = 16

// localStats are one process's counters for one cache, in Go memory: hits and
// misses are striped by goroutine (see stripe) so that goroutines on different
// cores rarely share a line. The background goroutine publishes their sums to the arena.
type localStats struct {
	stripes    [statStripes]statStripe
	loads      atomic.Uint64
	loadErrors atomic.Uint64
	counterOps atomic.Uint64
	casFails   atomic.Uint64

	staleServes    atomic.Uint64
	failSafeServes atomic.Uint64
	refreshes      atomic.Uint64
	negativeHits   atomic.Uint64
}

type statStripe struct {
	hits   atomic.Uint64
	misses atomic.Uint64
	_      [112]byte // a 128-byte line pair: the adjacent-line prefetcher pulls lines in pairs
}

func (l *localStats) sums() (hits, misses uint64) {
	for i := range l.stripes {
		hits += l.stripes[i].hits.Load()
		misses += l.stripes[i].misses.Load()
	}
	return hits, misses
}

// Background tuning.
const (
	bgTick        = 100 * time.Millisecond
	sweepEvery    = 10 // ticks
	sweepBuckets  = 1024
	failedLinger  = time.Second
	loaderPollMin = 2 * time.Millisecond
	loaderPollMax = 50 * time.Millisecond
)

func (sp *Space) startBackground() {
	sp.bgDone.Add(1)
	go func() {
		defer sp.bgDone.Done()
		t := time.NewTicker(bgTick)
		defer t.Stop()
		cursors := make([]int, len(sp.sh))
		for n := 1; ; n++ {
			select {
			case <-sp.stop:
				return
			case <-t.C:
			}
			sp.publishStats()
			if n%sweepEvery == 0 && sp.holdSweepLease() {
				sp.sweep(cursors, sweepBuckets)
			}
		}
	}()
}

// publishStats copies this process's counters into its rows of the arena.
func (sp *Space) publishStats() {
	slot := sp.p.Slot()
	tok := sp.p.Token()
	for id := range MaxCaches {
		row := &sp.stats[slot*MaxCaches+id]
		l := &sp.local[id]
		hits, misses := l.sums()
		row.hits.Store(hits)
		row.misses.Store(misses)
		row.loads.Store(l.loads.Load())
		row.loadErrors.Store(l.loadErrors.Load())
		row.counterOps.Store(l.counterOps.Load())
		row.casFails.Store(l.casFails.Load())
		row.staleServes.Store(l.staleServes.Load())
		row.failSafeServes.Store(l.failSafeServes.Load())
		row.refreshes.Store(l.refreshes.Load())
		row.negativeHits.Store(l.negativeHits.Load())
		row.token.Store(tok)
	}
}

// holdSweepLease reports whether this process is the space's sweeper, taking
// the lease over from a dead holder or when nobody holds it.
func (sp *Space) holdSweepLease() bool {
	me := sp.p.Token()
	cur := sp.h.sweeper.Load()
	if cur == me {
		return true
	}
	if cur != 0 && sp.a.Alive(cur) {
		return false
	}
	return sp.h.sweeper.CompareAndSwap(cur, me)
}

// sweep frees items past their horizon (see pastHorizon), expired negative
// records and stale failed records, at most per buckets a
// shard per call, holding each shard's lock for one batch only.
func (sp *Space) sweep(cursors []int, per int) int {
	freed := 0
	now := time.Now().UnixNano()
	for si := range sp.sh {
		sh := &sp.sh[si]
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := sp.lock(ctx, sh)
		cancel()
		if err != nil {
			continue
		}
		for range min(per, len(sh.b)) {
			b := &sh.b[cursors[si]]
			cursors[si] = (cursors[si] + 1) % len(sh.b)
			for i := range slotsPerBucket {
				_, r := sp.slotRec(sh, b, i)
				if r == nil {
					continue
				}
				if (r.kind == kindItem && sp.pastHorizon(r, now)) || (r.kind == kindFailed || r.kind == kindNegative) && r.exp != 0 && r.exp <= now {
					sp.drop(sh, slotRef{b, i}, opExpire)
					freed++
				}
			}
		}
		sp.unlock(sh)
	}
	return freed
}

// Sweep frees every expired entry of the space now (an item kept for
// StaleFor or FailSafeFor once that ran out too) (watchers are told) and
// returns how many it freed. The space's sweeper does this in the background;
// tests and tools call it to force the matter.
func (sp *Space) Sweep() int {
	cursors := make([]int, len(sp.sh))
	return sp.sweep(cursors, int(sp.bmsk+1))
}
