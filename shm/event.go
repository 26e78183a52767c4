package shm

import (
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/nocopy"
)

// EventSize is the size of an Event in the arena.
const EventSize = 8

// Event lets processes sleep until another process makes a condition true,
// with the rule that a wake costs a system call only when somebody sleeps.
// It lives in the arena (8 bytes, 4-byte aligned); its zero value is ready to
// use. It must not be copied. It is safe for concurrent use by any number of
// processes and goroutines.
//
// A sleeper announces itself before it sleeps and re-checks its condition
// after announcing:
//
//	t := ev.Prepare()        // announce
//	if ready() {             // re-check after the announcement
//		ev.Cancel()
//	} else {
//		ev.Sleep(t, timeout) // sleeps unless a Wake came after Prepare
//	}
//
// A waker first makes the condition true, then calls Wake. In the terminology
// of the Go memory model, both the announcement (a sequentially consistent
// add) and the waker's condition store precede the other side's load, so at
// least one side sees the other: either the sleeper's re-check sees the
// condition, or Wake sees the announcement and bumps the sequence, which makes
// the futex wait return at once or wakes it.
//
// A process killed between Prepare and Sleep leaves the waiter count one too
// high; the cost is a wasted wake system call per Wake until the structure is
// reset, never a lost wake-up.
type Event struct {
	_       nocopy.NoCopy
	seq     atomic.Uint32 // the futex word; Wake adds one
	waiters atomic.Uint32 // announced sleepers
}

// EventTicket is what Prepare returns and Sleep takes.
type EventTicket uint32

// Prepare announces a sleeper and returns the sequence it must sleep on. Every
// Prepare must be followed by exactly one Sleep or Cancel.
func (e *Event) Prepare() EventTicket {
	t := e.seq.Load()
	e.waiters.Add(1) // seq-cst: ordered before the caller's re-check
	return EventTicket(t)
}

// Cancel withdraws an announcement when the re-check found the condition true.
func (e *Event) Cancel() { e.waiters.Add(^uint32(0)) }

// Sleep sleeps until Wake is called after the Prepare that returned t, a
// spurious wake-up, or the timeout (negative: no limit), then withdraws the
// announcement. It returns ErrTimeout on timeout; nil otherwise.
func (e *Event) Sleep(t EventTicket, timeout time.Duration) error {
	err := FutexWait(&e.seq, uint32(t), timeout)
	e.waiters.Add(^uint32(0))
	return err
}

// Wake wakes every announced sleeper, and does nothing (no system call) when
// none is announced. Call it after making the sleepers' condition true. It
// reports whether it made the system call.
func (e *Event) Wake() bool {
	if e.waiters.Load() == 0 { // seq-cst: ordered after the caller's condition store
		return false
	}
	e.seq.Add(1)
	FutexWake(&e.seq, 0) //nolint: the only error is EFAULT on an unmapped word
	return true
}

// Waiters returns the number of announced sleepers.
func (e *Event) Waiters() uint32 { return e.waiters.Load() }
