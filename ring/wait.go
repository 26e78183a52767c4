package ring

import (
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/shm"
)

// waiter is where one end of a ring sleeps until the other end makes its
// condition true: the consumer until a commit, the producer until space is
// freed. It lives in the ring header (8 bytes); its zero value has no sleeper.
// A ring end has one goroutine, so each waiter has at most one sleeper, which
// lets a wake clear the announcement itself: after one wake, further wakes cost
// nothing until the sleeper announces again. (shm.Event counts sleepers and
// withdraws them only when they return, so a waker that commits many records
// while its woken peer is still being scheduled would make a system call for
// each of them.)
//
// Protocol: the sleeper loads seq, stores sleeping = 1, re-checks its
// condition, and only then waits on seq. The waker makes the condition true,
// then loads sleeping; if it is 1 and its CAS to 0 wins, it bumps seq and
// wakes. Both the announcement and the condition store precede the other
// side's load (sequentially consistent), so at least one side sees the
// other; and a bump of seq after the sleeper loaded it makes the futex wait
// return at once. The one condition store that is not always sequentially
// consistent, the producer's commit on amd64, is covered by the consumer's
// sleepGen and the producer's ackGen (package doc, "Commits without a
// fence").
type waiter struct {
	seq      atomic.Uint32 // the futex word; a wake adds one
	sleeping atomic.Uint32 // 1 while the sleeper is announced; cleared by the sleeper or the waker that wakes it
}

type ticket uint32

// prepare announces the sleeper; the caller then re-checks its condition and
// calls cancel or sleep.
func (w *waiter) prepare() ticket {
	t := w.seq.Load()
	w.sleeping.Store(1) // seq-cst: ordered before the caller's re-check
	return ticket(t)
}

// cancel withdraws the announcement.
func (w *waiter) cancel() { w.sleeping.Store(0) }

// sleep waits until a wake after prepare, a spurious wake-up or the timeout.
func (w *waiter) sleep(t ticket, timeout time.Duration) {
	shm.FutexWait(&w.seq, uint32(t), timeout) // errors are outcomes: the caller re-checks
	w.sleeping.Store(0)
}

// wake wakes the sleeper if one is announced; it makes a system call only
// then, and only once per announcement. Call it after making the sleeper's
// condition true.
func (w *waiter) wake() {
	// seq-cst load: ordered after the caller's condition store when that was
	// sequentially consistent; after a release store (order.StoreRelease, a
	// MOV on amd64) it may be satisfied first, and the consumer covers the
	// commits this load may miss (package doc, "Commits without a fence").
	if w.sleeping.Load() != 0 {
		w.wakeSlow()
	}
}

func (w *waiter) wakeSlow() {
	if !w.sleeping.CompareAndSwap(1, 0) {
		return
	}
	w.seq.Add(1)
	shm.FutexWake(&w.seq, 1)
}
