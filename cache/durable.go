package cache

// The writer side of the log writer's protocol: what a Set or Del of a
// persistent cache waits for before it returns (an Always writer until its
// record is durable, any writer while the log writer lags half a journal),
// and what it refuses while the log cannot be written. The protocol as a
// whole, both halves of group commit (these waits and the log writer's
// batching in persist's LogWriter.Run), is described once, in package
// persist's doc (# Group commit).

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/xtime"
)

// writerSleep bounds one futex sleep of an Always writer: it then checks
// that the log writer lives.
const writerSleep = 50 * time.Millisecond

// writerGrace is how long an Always writer waits for a new log writer after
// the one it waited for died.
const writerGrace = 10 * time.Second

// durability resolves the cache's Durability against the cluster default.
func (c *Cache) durability() Durability {
	if d := c.opts.Durability; d != DurabilityDefault {
		return d
	}
	if d := Durability(c.sp.jr.h.defDur.Load()); d != DurabilityDefault {
		return d
	}
	return DefaultDurability
}

// awaitDurable waits, for a persistent cache whose durability is Always, until
// the log writer has the change that ended at journal position jend on disk.
// A change that could not be journaled (jendLost) is not durable, whatever
// the durability.
func (c *Cache) awaitDurable(ctx context.Context, jend uint64) error {
	if jend == 0 || !c.opts.Persist {
		return nil
	}
	if jend == jendLost {
		return fmt.Errorf("%w: the journal lock was held 5 s by a process that does not run; the change is in the cache and the log writer's next snapshot logs it", ErrNotDurable)
	}
	if c.durability() != Always {
		return nil
	}
	j := c.sp.jr.h
	// Sleep at once: polling for the fsync's 100+ µs would take the
	// processor from the log writer and the other writers (measured: with 4
	// writers on 2 cores, polling for 20 µs gained nothing, and for 200 µs
	// cost two thirds of the throughput).
	j.pev.Wake() // the log writer gathers a group commit: tell it this record is in
	var deadSince time.Time
	for !j.covers(jend) {
		if f := j.failing.Load(); f != 0 {
			return fmt.Errorf("%w: %w", ErrNotDurable, failingError(f))
		}
		owner := j.writer.Load()
		if owner == 0 {
			return fmt.Errorf("%w: no log writer", ErrNotDurable)
		}
		j.pev.Wake() // the log writer batches others' writes: ask it to go now
		timedOut := c.sp.durWait.wait(ctx, j, jend, xtime.Bound(ctx, writerSleep))
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrNotDurable, err)
		}
		if timedOut && !j.covers(jend) && !c.sp.a.Alive(owner) {
			// A cache manager process that died is restarted by the master and
			// resumes where it had logged to: give it a while.
			if deadSince.IsZero() {
				deadSince = time.Now()
			} else if time.Since(deadSince) > writerGrace {
				return fmt.Errorf("%w: the log writer died and none took over in %v", ErrNotDurable, writerGrace)
			}
		}
	}
	return nil
}

// covers reports whether the durable position has passed jend. A durable
// position past the journal's tail is damage, never the log writer's (it
// stores positions it read, and tail only grows), and covers nothing: an
// Always writer is not acknowledged on it. durable is loaded before tail,
// so a healthy pair always has durable <= tail.
func (j *journalHdr) covers(jend uint64) bool {
	d := j.durable.Load()
	return d >= jend && d <= j.tail.Load()
}

// refuseIfFailing returns ErrPersistFailing (wrapped, naming the error)
// while the log writer cannot write its log: Set and Del of a persistent cache
// call it before they change anything. One atomic load.
func (c *Cache) refuseIfFailing() error {
	if f := c.sp.jr.h.failing.Load(); f != 0 {
		return failingError(f)
	}
	return nil
}

// failingError is ErrPersistFailing with the log writer's error number.
func failingError(f uint32) error {
	if f == failingOther {
		return ErrPersistFailing
	}
	return fmt.Errorf("%w: %w", ErrPersistFailing, syscall.Errno(f))
}

// failingOther is the failing word of an error without an errno.
const failingOther = ^uint32(0)

// durableWaiters puts one goroutine of this process to sleep on the journal's
// durable futex for all the Always writers of the process waiting at the
// moment; the others wait on a channel that it closes when it wakes. A futex
// sleeper holds an OS thread (and its P, see wait), and waking one costs the
// kernel (in a VM, waking an idle virtual processor: tens of µs). Measured in
// one process on 2 vCPUs: 16 writers went from 25k to 31-38k sets/s with one
// sleeper, and to 48-50k with the yield before its sleep; 4 writers from 12k
// to 21-22k (3.8 sets per fsync instead of 2.6) with both.
type durableWaiters struct {
	mu    sync.Mutex
	round *durableRound // the current sleeper's; nil: none sleeps
}

// durableRound is one sleep of the futex sleeper.
type durableRound struct {
	woke     chan struct{} // closed when the sleeper wakes
	timedOut bool          // its sleep timed out (written before woke is closed)
}

// wait sleeps until the journal's durable position may have moved (an fsync
// of the log writer, or a spurious wake-up), ctx ends or timeout passes, and
// reports whether it timed out. The caller re-checks the position.
func (dw *durableWaiters) wait(ctx context.Context, j *journalHdr, jend uint64, timeout time.Duration) (timedOut bool) {
	dw.mu.Lock()
	if r := dw.round; r != nil {
		dw.mu.Unlock()
		select {
		case <-r.woke: // within the sleeper's timeout (at most writerSleep)
			return r.timedOut
		case <-ctx.Done():
			return true
		}
	}
	r := &durableRound{woke: make(chan struct{})}
	dw.round = r
	dw.mu.Unlock()
	// Let the goroutines queued behind this one run first (the writers the
	// last wake-up released, most often): a goroutine blocked in a system
	// call keeps its P, and the goroutines in the P's run queue wait until
	// the runtime's monitor takes the P back, 20 µs to 10 ms later.
	runtime.Gosched()
	tk := j.durEv.Prepare()
	if j.covers(jend) {
		j.durEv.Cancel()
	} else {
		r.timedOut = j.durEv.Sleep(tk, timeout) != nil
	}
	dw.mu.Lock()
	dw.round = nil
	dw.mu.Unlock()
	close(r.woke)
	return r.timedOut
}

// throttle makes a writer of a persistent cache wait while the log writer is
// more than half a journal behind, so that the journal does not lap it (which
// would cost a snapshot, and under EverySecond lose more than a second). It
// gives up after about a second, when the log writer is gone, or when ctx ends:
// the journal then laps and the log writer snapshots.
func (c *Cache) throttle(ctx context.Context) {
	j := c.sp.jr.h
	half := c.sp.jr.cap / 2
	for i := 0; j.tail.Load()-j.logged.Load() > half; i++ {
		if j.writer.Load() == 0 || i >= 1000 || ctx.Err() != nil {
			return
		}
		j.pev.Wake()
		tk := j.durEv.Prepare()
		if j.tail.Load()-j.logged.Load() <= half {
			j.durEv.Cancel()
			return
		}
		j.durEv.Sleep(tk, time.Millisecond)
	}
}
