package shm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/xtime"
)

// LockSize is the size of a Lock in the arena.
const LockSize = 8

// Lock word values. The low 30 bits name the owner; bit 31 says that somebody
// sleeps on the word.
const (
	lockFree      = 0       // nobody holds it
	lockAbandoned = 1       // nobody holds it, and its last owner died holding it
	lockWaiters   = 1 << 31 // a waiter sleeps (or slept) on the futex
)

// Tuning of the slow path. A waiter spins lockSpin times, then sleeps on the
// futex for lockFirstBound; each time a sleep ends without the lock it checks
// whether the owner still lives, and doubles the bound up to lockMaxBound.
const (
	lockSpin       = 64
	lockFirstBound = time.Millisecond
	lockMaxBound   = 20 * time.Millisecond
)

// Lock is a mutual exclusion lock between processes that survives the death
// of its owner. It lives in the arena (8 bytes, 4-byte aligned); its zero
// value is an unlocked lock. It must not be copied. Register every Lock with
// [Arena.RegisterLocks] so that [Arena.ReleaseSlot] can release it.
//
// The lock word holds the owner's generation ([Proc.Token]), never a bare pid:
// a waiter that has waited past a short bound (1 ms, then doubling to 20 ms)
// checks whether that owner still lives (its slot, pid and start time) and,
// when it is dead, takes the lock over. Either way — taken over by a waiter,
// or released by ReleaseSlot and then acquired — the new owner is told that
// it recovered an abandoned lock, and must repair what the lock guards: design
// every step of a write guarded by a Lock so that a half-done state can be
// detected and rolled back or forward.
//
// In the terminology of the Go memory model, Unlock synchronizes before the
// Lock that next acquires it, in any process; so does the death of an owner
// before the takeover (nothing the dead owner wrote is lost, but it may be
// half done).
//
// A Lock is not reentrant: a goroutine that locks a Lock its own process holds
// waits for it like any other process.
type Lock struct {
	_    nocopy.NoCopy
	word atomic.Uint32 // lockFree, lockAbandoned, or owner token; | lockWaiters
	_    uint32
}

// Lock acquires l for p, waiting as long as needed but no longer than ctx
// allows. recovered is true when the previous owner died holding the lock. On
// ctx's end it returns an error wrapping ctx.Err() (and ErrTimeout on a
// deadline) without the lock.
func (l *Lock) Lock(ctx context.Context, p *Proc) (recovered bool, err error) {
	if l.word.CompareAndSwap(lockFree, p.token) {
		return false, nil
	}
	return l.lockSlow(ctx, p)
}

// TryLock acquires l for p if nobody holds it, without waiting.
func (l *Lock) TryLock(p *Proc) (ok, recovered bool) {
	for {
		w := l.word.Load()
		switch w &^ lockWaiters {
		case lockFree:
			if l.word.CompareAndSwap(w, p.token|w&lockWaiters) {
				return true, false
			}
		case lockAbandoned:
			if l.word.CompareAndSwap(w, p.token|w&lockWaiters) {
				return true, true
			}
		default:
			return false, false
		}
	}
}

func (l *Lock) lockSlow(ctx context.Context, p *Proc) (bool, error) {
	var (
		spins     int
		slept     bool // once we slept, we take the lock with the waiters bit set: others may sleep too
		bound     = lockFirstBound
		nextCheck time.Time
	)
	for {
		w := l.word.Load()
		owner := w &^ lockWaiters
		if owner == lockFree || owner == lockAbandoned {
			nw := p.token | w&lockWaiters
			if slept {
				nw |= lockWaiters
			}
			// acquire: the CAS orders everything the previous owner wrote
			// before our reads of the guarded data.
			if l.word.CompareAndSwap(w, nw) {
				return owner == lockAbandoned, nil
			}
			continue
		}
		if spins < lockSpin {
			spins++
			if spins%8 == 0 {
				runtime.Gosched()
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("shm: lock held by owner %d: %w", owner, ctxErr(err))
		}
		now := time.Now()
		if nextCheck.IsZero() {
			nextCheck = now.Add(bound)
		} else if !now.Before(nextCheck) {
			if !p.a.Alive(owner) {
				// The owner is dead: take the lock over. The CAS fails if the
				// owner released it meanwhile or somebody else took it over.
				if l.word.CompareAndSwap(w, p.token|lockWaiters) {
					return true, nil
				}
				continue
			}
			bound = min(bound*2, lockMaxBound)
			nextCheck = now.Add(bound)
		}
		// Announce: set the waiters bit so that Unlock wakes us.
		if w&lockWaiters == 0 {
			if !l.word.CompareAndSwap(w, w|lockWaiters) {
				continue
			}
			w |= lockWaiters
		}
		sleep := xtime.Bound(ctx, nextCheck.Sub(now))
		if err := FutexWait(&l.word, w, sleep); err != nil && !errors.Is(err, ErrTimeout) {
			return false, err
		}
		slept = true
	}
}

// Unlock releases l, which p must hold; it wakes one sleeping waiter, if the
// word says that one sleeps. Unlocking a lock p does not hold panics.
func (l *Lock) Unlock(p *Proc) {
	for {
		w := l.word.Load()
		if w&^lockWaiters != p.token {
			panic(fmt.Sprintf("shm: unlock of a lock held by %d, not by %d", w&^lockWaiters, p.token))
		}
		// release: everything written under the lock happens before the next
		// owner's acquiring CAS.
		if l.word.CompareAndSwap(w, lockFree) {
			if w&lockWaiters != 0 {
				FutexWake(&l.word, 1)
			}
			return
		}
	}
}

// Owner returns the generation of the lock's owner, or 0 if nobody holds it.
func (l *Lock) Owner() uint32 {
	o := l.word.Load() &^ lockWaiters
	if o == lockAbandoned {
		return 0
	}
	return o
}

// abandon marks l abandoned if tok holds it, and wakes its waiters.
func (l *Lock) abandon(tok uint32) {
	for {
		w := l.word.Load()
		if w&^lockWaiters != tok {
			return
		}
		if l.word.CompareAndSwap(w, lockAbandoned|w&lockWaiters) {
			if w&lockWaiters != 0 {
				FutexWake(&l.word, 0)
			}
			return
		}
	}
}

// abandonLocks marks abandoned every registered lock that tok holds.
func (a *Arena) abandonLocks(tok uint32) {
	if tok < firstToken {
		return
	}
	a.forEachLock(func(l *Lock) { l.abandon(tok) })
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.Join(ErrTimeout, err)
	}
	return err
}
