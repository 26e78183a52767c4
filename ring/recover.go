package ring

import (
	"context"
	"fmt"
)

// Unblock turns the record that a dead producer claimed but never committed
// into padding, so that the consumer moves past it, and reports whether there
// was one. Call it (from the consumer's process or the master) once the
// producer is known dead, before a new producer is attached; attaching a
// producer does the same by itself. It does nothing and returns false while
// the producer's process lives. It may run concurrently with the consumer:
// see the package doc for why that is safe. A record header found out of
// range returns ErrCorrupt.
func (r *Ring) Unblock(ctx context.Context) (bool, error) {
	p, err := r.a.Self()
	if err != nil {
		return false, fmt.Errorf("ring: unblock: %w", err)
	}
	if _, err := r.h.recovery.Lock(ctx, p); err != nil {
		return false, fmt.Errorf("ring: unblock: %w", err)
	}
	defer r.h.recovery.Unlock(p)
	if tok := r.h.producer.Load(); tok != 0 && r.a.Alive(tok) {
		return false, nil
	}
	return r.recoverClaim()
}

// recoverClaim finds the claimed but uncommitted bytes, if any, and commits
// them as padding. The caller holds the recovery lock and no live producer
// writes: the only other writer is the consumer, which consumes committed
// records and zeroes them after storing read past them.
func (r *Ring) recoverClaim() (bool, error) {
	tail := r.h.tail.Load()
restart:
	q := r.h.read.Load()
	for q < tail {
		if tail-q > r.cap {
			return false, fmt.Errorf("%w: read %d is %d bytes behind tail", ErrCorrupt, q, tail-q)
		}
		i := q & r.mask
		w := r.words[i>>3].Load()
		// seq-cst: the consumer stores read past a record before it zeroes
		// the record, so a header seen zeroed (or half zeroed) by the load
		// above is followed by a read past it here.
		if r.h.read.Load() > q {
			goto restart
		}
		if w == 0 { // the claim starts here: nothing after it is committed
			first := min(tail-q, r.cap-i)
			if rest := tail - q - first; rest > 0 { // the claim runs into the next lap
				r.words[0].Store(padFlag | rest)
			}
			// release: commits the padding; the consumer's acquiring load of
			// the word then skips the claimed bytes.
			r.words[i>>3].Store(padFlag | first)
			r.h.dataReady.wake()
			return true, nil
		}
		size, _, ok := r.decode(w, i)
		if !ok {
			return false, fmt.Errorf("%w: header %#x at %d", ErrCorrupt, w, q)
		}
		q += size
	}
	return false, nil
}
