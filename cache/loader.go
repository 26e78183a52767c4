package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/internal/xtime"
)

// load runs the loader-once protocol for a Get that missed (see the package
// doc): wait for another process's load, take over a dead loader's, or load.
func (c *Cache) load(ctx context.Context, key string, loader Loader) ([]byte, error) {
	sp := c.sp
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	me := sp.p.Token()
	waited, timedOut := false, false
	bound := loaderPollMin
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("cache %q: get %q: waiting for the loader: %w", c.name, key, err)
		}
		if err := sp.lock(ctx, sh); err != nil {
			return nil, fmt.Errorf("cache %q: get %q: %w", c.name, key, err)
		}
		takeOver := true
		if s := sp.find(sh, h, c.id, key); s.valid() {
			off := s.off()
			r := sp.rec(off)
			now := time.Now().UnixNano()
			live := r.exp == 0 || r.exp > now
			switch {
			case r.kind == kindItem && live:
				v := append([]byte{}, sp.recVal(off, r)...)
				sp.unlock(sh)
				return v, nil
			case r.kind == kindItem:
				sp.drop(sh, s, opExpire)
			case r.kind == kindFailed && live && waited:
				text := append([]byte{}, sp.recVal(off, r)...)
				noRoom := r.owner == failedNoRoom
				sp.unlock(sh)
				if noRoom {
					return nil, fmt.Errorf("cache %q: get %q: %w: %w (the loaded value found no room)", c.name, key, ErrLoaderFailed, ErrTooManyLoads)
				}
				return nil, loaderErr(c.name, key, text)
			case r.kind == kindLoading:
				// Another goroutine or process loads: wait, unless it is dead.
				takeOver = timedOut && r.owner != me && !sp.a.Alive(r.owner)
			}
		}
		if takeOver {
			// The loading record's exp field holds this load's id: with the
			// owner generation it names the load wherever the tail moves it.
			load := int64(sp.loadSeq.Add(1))
			if _, _, err := sp.store(sh, kindLoading, c.id, h, key, nil, load, me); err != nil {
				sp.unlock(sh)
				return nil, fmt.Errorf("cache %q: get %q: %w", c.name, key, err)
			}
			sp.unlock(sh)
			return c.runLoader(ctx, sh, h, key, load, loader)
		}
		// Announce before unlocking: the loader's store and Wake come after.
		tk := sh.h.ev.Prepare()
		sp.unlock(sh)
		timedOut = sh.h.ev.Sleep(tk, xtime.Bound(ctx, bound)) != nil
		waited = true
		bound = min(bound*2, loaderPollMax)
	}
}

// runLoader runs loader outside any lock, then replaces this call's loading
// record (named by the owner generation and load id, wherever the tail has
// moved it) with the value, or with a failed record carrying the error for
// the waiters. If the caller's context ended, the loading record is simply
// removed and a waiter loads instead. A record that is no longer ours (a Set
// came meanwhile) is left alone: the newer value wins. If the shard is so
// full of loads that the result finds no room, the loading record turns into
// a failed one in place (failedNoRoom): the waiters get ErrTooManyLoads
// rather than loading again, and our caller still gets its value.
func (c *Cache) runLoader(ctx context.Context, sh *shard, h uint64, key string, load int64, loader Loader) ([]byte, error) {
	sp := c.sp
	me := sp.p.Token()
	v, err := loader(ctx, key)
	if err == nil && len(v) > sp.maxValue {
		err = fmt.Errorf("loaded value of %d bytes: %w (limit %d)", len(v), ErrValueTooLarge, sp.maxValue)
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var jend uint64
	if lerr := sp.lock(lctx, sh); lerr == nil {
		if s := sp.find(sh, h, c.id, key); s.valid() {
			if r := sp.rec(s.off()); r.kind == kindLoading && r.owner == me && r.exp == load {
				var serr error
				switch {
				case err == nil:
					_, jend, serr = sp.store(sh, kindItem, c.id, h, key, v, c.deadline(0), 0)
				case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
					sp.drop(sh, s, opDel)
				default:
					_, _, serr = sp.store(sh, kindFailed, c.id, h, key, []byte(err.Error()), time.Now().Add(failedLinger).UnixNano(), 0)
				}
				if serr != nil {
					// store left the key's slot on our loading record
					// (reserve may have moved it: find it again; we still
					// hold the lock, so nobody else changed it).
					sp.failInPlace(sh, sp.find(sh, h, c.id, key))
				}
			}
		}
		sp.unlock(sh)
	}
	if err != nil {
		sp.local[c.id].loadErrors.Add(1)
		return nil, fmt.Errorf("cache %q: get %q: loader: %w", c.name, key, err)
	}
	sp.local[c.id].loads.Add(1)
	if err := c.awaitDurable(ctx, jend); err != nil {
		return v, fmt.Errorf("cache %q: get %q: %w", c.name, key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// failedNoRoom is the owner field of a failed record that was a loading
// record whose result found no room (see failInPlace).
const failedNoRoom = ^uint32(0)

// failInPlace turns the loading record of slot s into a failed record with
// no text, kept failedLinger, inside the bucket's seqlock. It is the one
// change of a record in place: its kind, owner and deadline words, which
// lock-free readers copy before the sequence check like any others.
func (sp *Space) failInPlace(sh *shard, s slotRef) {
	if !s.valid() {
		return
	}
	r := sp.rec(s.off())
	if r.kind != kindLoading {
		return
	}
	s.b.seq.Add(1)
	order.StoreFence() // arm64: the odd sequence before the plain stores in place (doc.go, fence 2)
	r.kind, r.owner, r.exp = kindFailed, failedNoRoom, time.Now().Add(failedLinger).UnixNano()
	s.b.seq.Add(1)
	sh.h.ev.Wake()
}
