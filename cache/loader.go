package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/internal/xtime"
)

// Loads. A load of a key is named by a loading record: the key's own (a
// miss: nothing to serve meanwhile), or the key's shadow (see shadowID) when
// the key's expired item is kept to be served meanwhile or instead: stale
// serving, refresh ahead and the fail-safe load beside the item, which stays
// readable. Either record carries the loader's owner generation and a load
// id (in exp), is never evicted, and is taken over when its owner dies; the
// load resolves it under the shard lock (finish), and every waiter sleeps on
// the shard's Event.

// Load tuning.
const (
	refreshMax     = time.Minute            // a detached load's bound without a HardTimeout
	refreshRecheck = 100 * time.Millisecond // how long a process leaves a key another process refreshes
)

// loadMark names one load: its record's kind of place (the key's or its
// shadow's), its load id, and for a load beside an item the item's deadline
// when the load began (a different one at the end means a newer value came:
// the load's result is dropped).
type loadMark struct {
	shadow  bool
	load    int64
	itemExp int64
}

// at returns the hash and cache id of the mark's record for key hash h of
// cache id.
func (m loadMark) at(h uint64, id uint32) (uint64, uint32) {
	if m.shadow {
		return h ^ shadowMix, id + shadowID
	}
	return h, id
}

// loadResult is what a finished load gives its caller: the value or the
// loader's error, and the journal position its value's change ends at.
type loadResult struct {
	v    []byte
	err  error
	jend uint64
	hard bool // the loader returned after its detached context's deadline: a HardTimeout
}

// load runs the loader-once protocol for a Get that found no fresh value
// (see the package doc): serve a kept value, wait for another process's
// load, take over a dead loader's, or load.
func (c *Cache) load(ctx context.Context, key string, loader Loader) ([]byte, error) {
	sp := c.sp
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	me := sp.p.Token()
	start := time.Now()
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
		var m loadMark
		var kept []byte // the expired item's value a failed or slow load returns (FailSafeFor)
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
			case r.kind == kindItem && now-r.exp < c.stale:
				v := append([]byte{}, sp.recVal(off, r)...)
				sp.unlock(sh)
				sp.local[c.id].staleServes.Add(1)
				c.refresh(key, loader, false)
				return v, nil
			case r.kind == kindItem && now-r.exp < int64(c.opts.FailSafeFor):
				kept = append([]byte{}, sp.recVal(off, r)...)
				m = loadMark{shadow: true, itemExp: r.exp}
				if ms := sp.find(sh, h^shadowMix, c.id+shadowID, key); ms.valid() {
					switch mr := sp.rec(ms.off()); {
					case mr.kind == kindFailed && mr.exp > now:
						// A load failed less than failedLinger ago: the
						// fail-safe's pause, for every process.
						sp.unlock(sh)
						sp.local[c.id].failSafeServes.Add(1)
						return kept, nil
					case mr.kind == kindLoading:
						takeOver = timedOut && mr.owner != me && !sp.a.Alive(mr.owner)
					}
				}
			case r.kind == kindItem:
				sp.drop(sh, s, opExpire)
			case r.kind == kindNegative && live:
				sp.unlock(sh)
				sp.local[c.id].negativeHits.Add(1)
				return nil, c.notFound(key)
			case r.kind == kindNegative:
				sp.drop(sh, s, opExpire)
			case r.kind == kindFailed && live && waited:
				text := append([]byte{}, sp.recVal(off, r)...)
				why := r.owner
				sp.unlock(sh)
				switch why {
				case failedNoRoom:
					return nil, fmt.Errorf("cache %q: get %q: %w: %w (the loaded value found no room)", c.name, key, ErrLoaderFailed, ErrTooManyLoads)
				case failedNotFound:
					return nil, fmt.Errorf("cache %q: get %q: %w (the load it waited for: %s)", c.name, key, ErrNotFound, text)
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
			m.load = int64(sp.loadSeq.Add(1))
			mh, mid := m.at(h, c.id)
			if _, _, err := sp.store(sh, kindLoading, mid, mh, key, nil, m.load, me); err != nil {
				sp.unlock(sh)
				return nil, fmt.Errorf("cache %q: get %q: %w", c.name, key, err)
			}
			sp.unlock(sh)
			return c.runLoad(ctx, sh, key, m, kept, loader, start)
		}
		// Wait, but not past the timeouts: the soft one returns the kept
		// value, the hard one that or ErrLoadTimeout.
		wait := bound
		if v, done, err := c.timeout(key, kept, start, &wait); done {
			sp.unlock(sh)
			return v, err
		}
		// Announce before unlocking: the loader's store and Wake come after.
		tk := sh.h.ev.Prepare()
		sp.unlock(sh)
		timedOut = sh.h.ev.Sleep(tk, xtime.Bound(ctx, wait)) != nil
		waited = true
		bound = min(bound*2, loaderPollMax)
	}
}

// timeout says whether a Get that began at start and waits for a load is
// past its timeouts, and with what it returns then: kept (counted) past the
// SoftTimeout, kept (a fail-safe serve) or ErrLoadTimeout past the
// HardTimeout. Otherwise it shortens *wait to end at the next one.
func (c *Cache) timeout(key string, kept []byte, start time.Time, wait *time.Duration) ([]byte, bool, error) {
	el := time.Since(start)
	soft, hard := c.opts.SoftTimeout, c.opts.HardTimeout
	switch {
	case kept != nil && soft > 0 && el >= soft:
		c.sp.local[c.id].staleServes.Add(1)
		return kept, true, nil
	case hard > 0 && el >= hard:
		v, err := c.timedOut(key, kept)
		return v, true, err
	}
	if kept != nil && soft > 0 {
		*wait = min(*wait, soft-el)
	}
	if hard > 0 {
		*wait = min(*wait, hard-el)
	}
	return nil, false, nil
}

// timedOut is what a Get past the HardTimeout returns: the kept value (a
// fail-safe serve) or ErrLoadTimeout.
func (c *Cache) timedOut(key string, kept []byte) ([]byte, error) {
	if kept != nil {
		c.sp.local[c.id].failSafeServes.Add(1)
		return kept, nil
	}
	return nil, fmt.Errorf("cache %q: get %q: %w after %v", c.name, key, ErrLoadTimeout, c.opts.HardTimeout)
}

// notFound is the error of a Get answered by a negative record.
func (c *Cache) notFound(key string) error {
	return fmt.Errorf("cache %q: get %q: %w (the loader said so less than NotFoundExpire ago)", c.name, key, ErrNotFound)
}

// runLoad runs loader for the load m this call marked, outside any lock,
// and resolves it (finish). Without timeouts the loader runs in the caller's
// goroutine with the caller's context. With a SoftTimeout or HardTimeout it
// runs in a goroutine of its own with a context detached from the caller's
// and bounded by the HardTimeout (refreshMax without one), so that it can go
// on and store its result after the caller returned: at the SoftTimeout
// with the kept value, at the HardTimeout with that or ErrLoadTimeout, or
// when ctx ends.
func (c *Cache) runLoad(ctx context.Context, sh *shard, key string, m loadMark, kept []byte, loader Loader, start time.Time) ([]byte, error) {
	if c.opts.SoftTimeout == 0 && c.opts.HardTimeout == 0 {
		l := c.callLoad(ctx, key, loader, kept != nil)
		gone := ctx.Err() != nil && (errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded))
		return c.answer(ctx, key, kept, c.finish(sh, key, m, l, gone))
	}
	done := make(chan loadResult, 1)
	go func() {
		lctx, cancel := c.detached(ctx)
		defer cancel()
		l := c.callLoad(lctx, key, loader, kept != nil)
		r := c.finish(sh, key, m, l, false)
		r.hard = l.err != nil && lctx.Err() != nil // the loader's answer raced the caller's timer
		done <- r
	}()
	var soft, hard <-chan time.Time
	if d := c.opts.SoftTimeout; d > 0 && kept != nil {
		t := time.NewTimer(d - time.Since(start))
		defer t.Stop()
		soft = t.C
	}
	if d := c.opts.HardTimeout; d > 0 {
		t := time.NewTimer(d - time.Since(start))
		defer t.Stop()
		hard = t.C
	}
	select {
	case r := <-done:
		if r.hard && c.opts.HardTimeout > 0 {
			return c.timedOut(key, kept)
		}
		return c.answer(ctx, key, kept, r)
	case <-soft:
		c.sp.local[c.id].staleServes.Add(1)
		return kept, nil
	case <-hard:
		return c.timedOut(key, kept)
	case <-ctx.Done():
		return nil, fmt.Errorf("cache %q: get %q: waiting for the loader: %w", c.name, key, ctx.Err())
	}
}

// detached is the context of a load that may outlive its caller: ctx's
// values, not its end, bounded by the HardTimeout or refreshMax.
func (c *Cache) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.opts.HardTimeout
	if d == 0 {
		d = refreshMax
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// answer is what the caller of a finished load gets: the value (once
// durable as the cache's durability asks), the kept value in place of an
// error (a fail-safe serve; not for "not found", which is an answer), or
// the error.
func (c *Cache) answer(ctx context.Context, key string, kept []byte, r loadResult) ([]byte, error) {
	if r.err != nil {
		if kept != nil && !errors.Is(r.err, ErrNotFound) {
			c.sp.local[c.id].failSafeServes.Add(1)
			return kept, nil
		}
		return nil, fmt.Errorf("cache %q: get %q: loader: %w", c.name, key, r.err)
	}
	if err := c.awaitDurable(ctx, r.jend); err != nil {
		return r.v, fmt.Errorf("cache %q: get %q: %w", c.name, key, err)
	}
	if r.v == nil {
		return []byte{}, nil
	}
	return r.v, nil
}

// callLoader runs loader, turning a panic into a *LoaderPanicError.
func callLoader(ctx context.Context, key string, loader Loader) (v []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, &LoaderPanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return loader(ctx, key)
}

// finish resolves load m of key with the loader's result l, under the shard
// lock, if its record is still this load's (named by owner generation and
// load id, wherever the tail moved it): see settle and settleBeside. gone
// says the caller gave up (its context ended and the loader returned that):
// the record is removed and a waiter loads instead. An untracked load of a
// distributed cache stores its value stale, or nothing (see "Tracking" in
// remote.go). It counts the load.
func (c *Cache) finish(sh *shard, key string, m loadMark, l loaded, gone bool) loadResult {
	sp := c.sp
	v, ttl, err := l.v, l.ttl, l.err
	if err == nil && len(v) > sp.maxValue {
		err = fmt.Errorf("loaded value of %d bytes: %w (limit %d)", len(v), ErrValueTooLarge, sp.maxValue)
	}
	if err != nil {
		sp.local[c.id].loadErrors.Add(1)
	} else {
		sp.local[c.id].loads.Add(1)
	}
	res := loadResult{v: v, err: err}
	// A load that outlived its caller may finish after Space.Close: the
	// arena may be gone then (see Space.Close).
	sp.arenaUse.RLock()
	defer sp.arenaUse.RUnlock()
	if sp.closed.Load() {
		return res
	}
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if sp.lock(lctx, sh) != nil {
		return res
	}
	defer sp.unlock(sh)
	h := hashKey(c.id, key)
	mh, mid := m.at(h, c.id)
	s := sp.find(sh, mh, mid, key)
	if !s.valid() {
		return res
	}
	if r := sp.rec(s.off()); r.kind != kindLoading || r.owner != sp.p.Token() || r.exp != m.load {
		return res
	}
	o := outcome{v: v, exp: c.deadline(ttl), err: err, gone: gone}
	if sp.untracked(l) {
		o.untracked = true
		if c.opts.keep() > 0 {
			o.exp = time.Now().UnixNano() // stale at once: kept, never served fresh
		}
	}
	if m.shadow {
		res.jend = c.settleBeside(sh, h, key, s, m, o)
	} else {
		res.jend = c.settle(sh, h, key, s, o)
	}
	return res
}

// outcome is a finished load's result as settle and settleBeside store it.
type outcome struct {
	v   []byte
	exp int64 // the value's deadline
	err error
	// gone: the caller gave up (finish); untracked: the value may have
	// changed in the second tier unheard ("Tracking" in remote.go): it is
	// stored only where the cache keeps expired values (exp is now then),
	// and a "not found" leaves no record for the waiters.
	gone, untracked bool
}

// keepsValue reports whether o's value is stored.
func (o outcome) keepsValue(c *Cache) bool { return !o.untracked || c.opts.keep() > 0 }

// settle replaces the loading record of slot s (a miss's load) with the
// value, a negative record (a "not found" with NotFoundExpire), nothing
// (gone; an untracked value the cache cannot keep stale, or an untracked
// "not found"), or a failed record carrying the error for the waiters. A
// record that is no longer ours (a Set came meanwhile) is left alone by
// finish: the newer value wins. If the shard is so full of loads that the
// result finds no room, the loading record turns into a failed one in
// place (failedNoRoom): the waiters get ErrTooManyLoads rather than
// loading again, and our caller still gets its value.
func (c *Cache) settle(sh *shard, h uint64, key string, s slotRef, o outcome) uint64 {
	sp := c.sp
	var jend uint64
	var serr error
	notFound := errors.Is(o.err, ErrNotFound)
	switch {
	case o.gone, o.err == nil && !o.keepsValue(c), notFound && o.untracked:
		sp.drop(sh, s, opDel)
	case o.err == nil:
		_, jend, serr = sp.store(sh, kindItem, c.id, h, key, o.v, o.exp, 0)
	case notFound && c.opts.NotFoundExpire > 0:
		_, _, serr = sp.store(sh, kindNegative, c.id, h, key, nil, time.Now().Add(c.opts.NotFoundExpire).UnixNano(), 0)
	case notFound:
		_, _, serr = sp.store(sh, kindFailed, c.id, h, key, []byte(o.err.Error()), time.Now().Add(failedLinger).UnixNano(), failedNotFound)
	default:
		_, _, serr = sp.store(sh, kindFailed, c.id, h, key, []byte(o.err.Error()), time.Now().Add(failedLinger).UnixNano(), 0)
	}
	if serr != nil {
		// store left the key's slot on our loading record (reserve may
		// have moved it: find it again; we still hold the lock, so nobody
		// else changed it).
		sp.failInPlace(sh, sp.find(sh, h, c.id, key))
	}
	return jend
}

// settleBeside resolves a load beside the key's item (its marker, the
// shadow's loading record, is slot s). Unless a newer record took the
// item's place meanwhile (a Set: another deadline; a negative or failed
// record; a loading one) the value replaces the item, keeping its tags (a
// Set: watchers and the log hear of it) and a "not found" deletes it (watchers hear OpDel),
// leaving a negative record with NotFoundExpire or else a failed record
// with the loader's error for the waiters. Then the marker goes, except
// after a failure: it becomes a failed record kept failedLinger, during
// which every Get of the key in the cluster returns the kept value without
// loading (the fail-safe's pause).
func (c *Cache) settleBeside(sh *shard, h uint64, key string, s slotRef, m loadMark, o outcome) uint64 {
	sp := c.sp
	mh, mid := m.at(h, c.id)
	is := sp.find(sh, h, c.id, key)
	newer := false
	var flags uint32
	var tags []byte // the item's tag list, copied: the refreshed value keeps it (storeItem may move the item)
	if is.valid() {
		r := sp.rec(is.off())
		newer = r.kind != kindItem || r.exp != m.itemExp
		if t := sp.recTags(is.off(), r); !newer && t != nil {
			flags, tags = itemTagged, append([]byte(nil), t...)
		}
	}
	var jend uint64
	var serr error
	now := time.Now()
	switch {
	case o.gone:
	case o.err == nil:
		if !newer && o.keepsValue(c) {
			_, jend, serr = sp.storeItem(sh, c.id, h, key, o.v, o.exp, flags, tags)
		}
	case errors.Is(o.err, ErrNotFound):
		if !newer {
			if is.valid() {
				jend = sp.drop(sh, is, opDel)
			}
			switch {
			case o.untracked:
			case c.opts.NotFoundExpire > 0:
				_, _, serr = sp.store(sh, kindNegative, c.id, h, key, nil, now.Add(c.opts.NotFoundExpire).UnixNano(), 0)
			default:
				_, _, serr = sp.store(sh, kindFailed, c.id, h, key, []byte(o.err.Error()), now.Add(failedLinger).UnixNano(), failedNotFound)
			}
		}
	default:
		if _, _, serr := sp.store(sh, kindFailed, mid, mh, key, []byte(o.err.Error()), now.Add(failedLinger).UnixNano(), 0); serr != nil {
			sp.failInPlace(sh, sp.find(sh, mh, mid, key))
		}
		return 0
	}
	_ = serr // a value or record that found no room: the marker goes, the item (if any) stays
	if ms := sp.find(sh, mh, mid, key); ms.valid() && sp.rec(ms.off()).kind == kindLoading {
		sp.drop(sh, ms, opDel)
	}
	return jend
}

// refresh starts a background load of key beside its item, which Get just
// served (ahead: still fresh, in the last part of its life; else in its
// stale window), unless this process refreshes it already or lately found
// another process doing so. At most one goroutine per key and process
// looks; at most one load per key runs in the cluster (the marker). A key
// already there costs no allocation (Load, unlike LoadOrStore, does not box
// the key: the hits served while the refresh runs allocate nothing).
func (c *Cache) refresh(key string, loader Loader, ahead bool) {
	b := c.base
	if _, busy := b.refreshing.Load(key); busy {
		return
	}
	if _, busy := b.refreshing.LoadOrStore(key, struct{}{}); busy {
		return
	}
	go c.refreshNow(key, loader, ahead)
}

// refreshNow is refresh's goroutine.
func (c *Cache) refreshNow(key string, loader Loader, ahead bool) {
	b := c.base
	m, sh, busy, ok := c.markBeside(key, ahead)
	if !ok {
		if busy { // another process loads it: look again refreshRecheck later
			time.AfterFunc(refreshRecheck, func() { b.refreshing.Delete(key) })
		} else {
			b.refreshing.Delete(key)
		}
		return
	}
	defer b.refreshing.Delete(key)
	c.sp.local[c.id].refreshes.Add(1)
	ctx, cancel := c.detached(context.Background())
	defer cancel()
	l := c.callLoad(ctx, key, loader, true)
	c.finish(sh, key, m, l, false)
	var pe *LoaderPanicError
	if errors.As(l.err, &pe) {
		slog.Error("cache: a background refresh's loader panicked", "cache", c.name, "key", key, "panic", pe.Value, "stack", string(pe.Stack))
	}
}

// markBeside marks a load of key beside its item, under the shard lock: if
// the item is still there as Get saw it (fresh in the last part of its life
// for ahead, else expired within its stale window) and no load of it runs
// (the shadow holds no live loading record, and no failed one of the
// fail-safe's pause). busy says another load runs or paused.
func (c *Cache) markBeside(key string, ahead bool) (m loadMark, sh *shard, busy, ok bool) {
	sp := c.sp
	sp.arenaUse.RLock()
	defer sp.arenaUse.RUnlock()
	if sp.closed.Load() {
		return m, nil, false, false
	}
	h := hashKey(c.id, key)
	sh = sp.shardOf(h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if sp.lock(ctx, sh) != nil {
		return m, sh, false, false
	}
	defer sp.unlock(sh)
	s := sp.find(sh, h, c.id, key)
	if !s.valid() {
		return m, sh, false, false
	}
	r := sp.rec(s.off())
	now := time.Now().UnixNano()
	if r.kind != kindItem || r.exp == 0 || (ahead && (r.exp <= now || r.exp-now > int64(r.life)*c.ahead)) || (!ahead && (r.exp > now || now-r.exp >= c.stale)) {
		return m, sh, false, false
	}
	m = loadMark{shadow: true, itemExp: r.exp}
	mh, mid := m.at(h, c.id)
	me := sp.p.Token()
	if ms := sp.find(sh, mh, mid, key); ms.valid() {
		switch mr := sp.rec(ms.off()); {
		case mr.kind == kindFailed && mr.exp > now:
			return m, sh, true, false
		case mr.kind == kindLoading && (mr.owner == me || sp.a.Alive(mr.owner)):
			return m, sh, true, false
		}
	}
	m.load = int64(sp.loadSeq.Add(1))
	if _, _, err := sp.store(sh, kindLoading, mid, mh, key, nil, m.load, me); err != nil {
		return m, sh, false, false // ErrTooManyLoads: no refresh now; the item stays
	}
	return m, sh, false, true
}

// The owner field of a failed record says what failed: failedNoRoom, a
// loading record whose result found no room (see failInPlace);
// failedNotFound, a loader's ErrNotFound (no NotFoundExpire), which its
// waiters get as ErrNotFound; anything else, a loader's error (its text is
// the record's value), which they get as ErrLoaderFailed.
const (
	failedNoRoom   = ^uint32(0)
	failedNotFound = ^uint32(0) - 1
)

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
