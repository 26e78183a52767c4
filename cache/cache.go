package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/nocopy"
)

// Loader computes the value of a key that missed. Get runs it in exactly one
// process of the cluster for concurrent misses of the same key.
type Loader func(ctx context.Context, key string) ([]byte, error)

// Cache is a process's handle on one named cache of a Space. It is safe for
// concurrent use by goroutines, and every process of the cluster that opens
// the same name sees the same entries. The zero value is not usable: get one
// from Use. Every Use returns a handle of its own, so that closing one
// (Close) leaves the others working. A Cache must not be copied.
type Cache struct {
	_      nocopy.NoCopy
	sp     *Space
	base   *Cache // the space's own handle of this cache (Space.caches): closed by Space.Close only
	id     uint32
	name   string
	opts   Options
	closed atomic.Bool

	// From opts, for the hit path (read's ahead and stale).
	ahead, stale int64

	// refreshing holds the keys this process refreshes in the background
	// now, or looked at lately and found another process refreshing (the
	// space's own handle's: one per cache and process; see refresh).
	refreshing sync.Map

	// rv is the space's own handle's view of this cache's Remote: the
	// Distribute map it was read from, so that remote() costs two atomic
	// loads rather than a map lookup while the map stays the same.
	rv atomic.Pointer[remoteView]
}

// handle returns a new handle on cache id, which the caller (Use) found or
// created in the registry, and makes the space's own handle of it on the
// first Use in this process: the one that tells watchers of changes
// (dispatch) and that Space.Close closes, and with it every handle made
// from it. The caller holds sp.mu.
func (sp *Space) handle(id uint32, name string, opts Options) *Cache {
	base := sp.caches[id]
	if base == nil {
		base = &Cache{sp: sp, id: id, name: name, opts: opts}
		base.base = base
		base.derive()
		sp.caches[id] = base
	}
	c := &Cache{sp: sp, base: base, id: id, name: name, opts: opts}
	c.derive()
	return c
}

// derive sets what the hit path takes from the options.
func (c *Cache) derive() {
	c.ahead = int64(aheadMillionths(c.opts.RefreshAhead)) // ns of window per ms of life: f × 1e6
	c.stale = int64(c.opts.StaleFor)
}

// Name returns the cache's name.
func (c *Cache) Name() string { return c.name }

// Options returns the cache's cluster-wide options.
func (c *Cache) Options() Options { return c.opts }

// Close closes this handle: every later call on it returns ErrClosed, and
// the watchers made with it (Watch) are stopped as by Unwatch. It closes
// nothing else: every other handle of the cache, from another Use in this
// process or in any other, keeps working, and the entries stay. Closing a
// closed handle does nothing. It returns nil.
func (c *Cache) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.unwatchAll()
	return nil
}

// isClosed reports whether this handle, or the space (Space.Close), was
// closed.
func (c *Cache) isClosed() bool { return c.closed.Load() || c.base.closed.Load() }

func (c *Cache) check(key string) error {
	switch {
	case c.isClosed():
		return fmt.Errorf("cache %q: %w", c.name, ErrClosed)
	case len(key) == 0:
		return fmt.Errorf("cache %q: %w", c.name, ErrEmptyKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("cache %q: key of %d bytes: %w (limit %d)", c.name, len(key), ErrKeyTooLarge, MaxKeyLen)
	}
	return nil
}

// GetInto appends the value of key to dst and reports whether the key had
// one. It never calls a loader, never locks, never makes a system call and
// allocates nothing when dst has room: it is the hot path. A value expired or
// being loaded reads as absent, as does a remembered "not found"
// (NotFoundExpire), whatever StaleFor says.
//
// In the terminology of the Go memory model, a Set (in any process) that
// GetInto observes synchronizes before GetInto returns.
func (c *Cache) GetInto(dst []byte, key string) ([]byte, bool, error) {
	out, res, err := c.get(dst, key, 0, 0)
	return out, res == resHit, err
}

// get is the lock-free lookup of GetInto and Get, with its statistics: it
// returns resHit (value appended), resAhead or resStale (value appended;
// only when ahead or stale are not 0, see read), resNegative, or resMiss
// for everything else. A bucket that stays unstable is read under the lock.
func (c *Cache) get(dst []byte, key string, ahead, stale int64) ([]byte, int, error) {
	if err := c.check(key); err != nil {
		return dst, resMiss, err
	}
	sp := c.sp
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	out, res, _ := sp.read(sh, h, c.id, key, dst, ahead, stale)
	si := stripe()
	st := &sp.local[c.id].stripes[si]
	switch res {
	case resHit, resAhead, resStale: // read raised the record's access count (doc.go # Eviction)
		st.hits.Add(1)
		return out, res, nil
	case resUnstable:
		v, ok, err := c.readLocked(context.Background(), sh, h, key, dst)
		if ok {
			st.hits.Add(1)
			return v, resHit, err
		}
		st.misses.Add(1)
		return v, resMiss, err
	case resNegative:
		st.misses.Add(1)
		return dst, resNegative, nil
	}
	st.misses.Add(1)
	return dst, resMiss, nil
}

// readLocked reads key under its shard lock (the fallback when a writer keeps
// the bucket unstable, or died inside it: taking the lock repairs that).
func (c *Cache) readLocked(ctx context.Context, sh *shard, h uint64, key string, dst []byte) ([]byte, bool, error) {
	sp := c.sp
	if err := sp.lock(ctx, sh); err != nil {
		return dst, false, fmt.Errorf("cache %q: get %q: %w", c.name, key, err)
	}
	defer sp.unlock(sh)
	s := sp.find(sh, h, c.id, key)
	if !s.valid() {
		return dst, false, nil
	}
	off := s.off()
	r := sp.rec(off)
	if r.kind != kindItem {
		return dst, false, nil
	}
	if now := time.Now().UnixNano(); r.exp != 0 && r.exp <= now {
		if sp.pastHorizon(r, now) {
			sp.drop(sh, s, opExpire)
		}
		return dst, false, nil
	}
	s.touch()
	return append(dst, sp.recVal(off, r)...), true, nil
}

// Get returns the value of key. On a miss it runs loader — in exactly one
// process of the cluster for concurrent misses of the same key; every other
// caller, in any process, waits for that result (bounded by ctx) and gets the
// value, or the loader's error wrapped in ErrLoaderFailed. If the loading
// process dies, a waiter takes the load over. A nil loader on a miss returns
// ErrNotFound (in a distributed cache, after the second tier had none).
// The loaded value is stored with the cache's Expire and
// watchers are told of it like any Set. A load in progress is never evicted;
// a shard so full of them that another finds no room returns an error
// wrapping ErrTooManyLoads (no loader runs twice).
//
// The cache's loader options (Options: StaleFor, FailSafeFor, SoftTimeout,
// HardTimeout, RefreshAhead, NotFoundExpire) say when Get returns an
// expired value instead of waiting or failing, when it refreshes a value in
// the background, and when it remembers a "not found". A loader that panics
// does not take the process down: its load ends as failed (the waiters get
// ErrLoaderFailed) and its caller gets an error wrapping ErrLoaderPanic, a
// *LoaderPanicError with the panic's value and stack; a background
// refresh's panic is logged (log/slog, at ERROR) with its stack.
//
// A value Get returns is never nil (an empty value is []byte{}) and belongs
// to the caller: a hit copies it out of the arena, which costs one
// allocation of its size; GetAppend into a reused buffer costs none. On an
// error Get returns nil, but for ErrNotDurable after a load (the value,
// stored but not known to be in the log).
func (c *Cache) Get(ctx context.Context, key string, loader Loader) ([]byte, error) {
	return c.GetAppend(ctx, nil, key, loader)
}

// GetAppend is Get that appends the value to dst and returns the extended
// slice, as GetInto does for a hit without a loader: with the same loader,
// loader options and second tier as Get, and the same answers and errors. A
// hit (fresh, stale or refresh-ahead) allocates nothing when dst has room
// for the value, and never calls the loader; a miss may allocate (the
// load). On an error it returns dst unchanged, but for ErrNotDurable after
// a load (dst with the value appended).
//
// An empty value appends nothing: the result is dst, or []byte{} when dst
// is nil, so that a nil result always comes with an error. With a nil dst
// GetAppend is Get, whose result may be the loader's own slice after a
// load; with another dst the value is always copied into dst's array (or
// the larger one append makes), never aliased.
func (c *Cache) GetAppend(ctx context.Context, dst []byte, key string, loader Loader) ([]byte, error) {
	if loader == nil && c.remote() != nil {
		loader = noLoader // a miss still reads the second tier
	}
	if loader == nil {
		v, ok, err := c.GetInto(dst, key)
		switch {
		case err != nil:
			return dst, err
		case !ok:
			return dst, fmt.Errorf("cache %q: get %q: %w", c.name, key, ErrNotFound)
		}
		return nonNil(v), nil
	}
	v, res, err := c.get(dst, key, c.ahead, c.stale)
	switch {
	case err != nil:
		return dst, err
	case res == resMiss:
		v, err := c.load(ctx, key, loader)
		return appendLoaded(dst, v), err
	case res == resNegative:
		c.sp.local[c.id].negativeHits.Add(1)
		return dst, c.notFound(key)
	case res == resAhead:
		c.refresh(key, loader, true)
	case res == resStale:
		c.sp.local[c.id].staleServes.Add(1)
		c.refresh(key, loader, false)
	}
	return nonNil(v), nil
}

// nonNil returns v, or []byte{} for nil: the value a hit appended to a nil
// dst is never nil, even when empty (a zero-sized slice: no allocation).
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// appendLoaded is GetAppend's result after load returned v (a value of its
// own, not in dst: the loader's, or a copy; never nil with no error, nil
// with one, but for ErrNotDurable): v itself for a nil dst (Get: no second
// copy), else dst with v appended.
func appendLoaded(dst, v []byte) []byte {
	if dst == nil {
		return v
	}
	return append(dst, v...)
}

// Set stores value under key and reports whether it did: with
// LeaveIfNotNull (or SetIfAbsent) it stores only when the key has no value.
// opts.Tags tag the entry (see InvalidateTag); a tag list past MaxTags or a
// tag past MaxTagLen returns ErrTooManyTags or ErrBadTag and stores nothing. A stored value
// replaces the old one atomically for every reader, and watchers are told. A
// full cache evicts its least used entries to make room (S3-FIFO: see the
// package doc's Eviction); a value
// longer than the space's MaxValueLen returns ErrValueTooLarge and changes
// nothing. ErrTooManyLoads, when the key's shard is full of loads in
// progress (see Get), stores nothing (entries evicted on the way to make room
// stay evicted). value may be reused after Set returns. In a persistent cache, Set
// returns ErrPersistFailing and stores nothing while the log writer cannot
// write its log, and returns true with ErrNotDurable when the value is stored
// but not known to be in the log (see both). In a distributed cache (see
// Space.Distribute) the value goes to the second tier first: an error there
// (wrapping ErrRemoteDown when it cannot be reached) stores nothing, and a
// stored value is dropped from the arena, so that the next Get reads it back
// from the tier (the package doc's "Distributed caches").
func (c *Cache) Set(ctx context.Context, key string, value []byte, opts SetOptions) (bool, error) {
	if err := c.check(key); err != nil {
		return false, err
	}
	tags, exp, err := c.setArgs(key, value, opts)
	if err != nil {
		return false, fmt.Errorf("cache %q: set %q: %w", c.name, key, err)
	}
	if exp != 0 && exp <= time.Now().UnixNano() {
		return false, nil
	}
	if r := c.remote(); r != nil {
		if ok, local, err := c.setRemote(ctx, r, key, value, exp, opts); !local {
			return ok, err
		}
	}
	sp := c.sp
	if err := c.beforeWrite(ctx); err != nil {
		return false, fmt.Errorf("cache %q: set %q: %w", c.name, key, err)
	}
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return false, fmt.Errorf("cache %q: set %q: %w", c.name, key, err)
	}
	if opts.LeaveIfNotNull {
		if s := sp.find(sh, h, c.id, key); s.valid() {
			if r := sp.rec(s.off()); r.kind == kindItem && (r.exp == 0 || r.exp > time.Now().UnixNano()) {
				sp.unlock(sh)
				return false, nil
			}
		}
	}
	var flags uint32
	if len(tags) > 0 {
		flags = itemTagged
	}
	_, jend, err := sp.storeItem(sh, c.id, h, key, value, exp, flags, tags)
	sp.unlock(sh)
	if err != nil {
		return false, fmt.Errorf("cache %q: set %q: %w", c.name, key, err)
	}
	if err := c.awaitDurable(ctx, jend); err != nil {
		return true, fmt.Errorf("cache %q: set %q: %w", c.name, key, err)
	}
	return true, nil
}

// maxValue is the longest value c stores: a persistent cache's values must
// also fit in a journal record.
func (c *Cache) maxValue() int {
	if c.opts.Persist {
		return min(c.sp.maxValue, int(c.sp.maxJournalValue()))
	}
	return c.sp.maxValue
}

// deadline returns the absolute deadline of an entry set now.
func (c *Cache) deadline(override time.Duration) int64 {
	ttl := c.opts.Expire
	switch {
	case override < 0:
		return 0
	case override > 0:
		ttl = override
	}
	if ttl == 0 {
		return 0
	}
	return time.Now().Add(ttl).UnixNano()
}

// store writes a record and points key's slot at it, under the shard lock.
// It returns the record's offset and, for an item whose change was
// journaled, the journal position past it (else 0). It fails only with
// ErrTooManyLoads, leaving key as it was (what reserve evicted on the way
// stays evicted; the written record, if any, is unreferenced garbage).
func (sp *Space) store(sh *shard, kind uint8, id uint32, h uint64, key string, val []byte, exp int64, owner uint32) (uint64, uint64, error) {
	return sp.storeRec(sh, kind, id, h, key, val, nil, exp, owner)
}

// storeItem is store of an item with flags (itemCounter, itemTagged: the
// record's owner word) and, when tagged, its encoded tag list (tags.go),
// which follows the value in the record and in the journal.
func (sp *Space) storeItem(sh *shard, id uint32, h uint64, key string, val []byte, exp int64, flags uint32, tags []byte) (uint64, uint64, error) {
	return sp.storeRec(sh, kindItem, id, h, key, val, tags, exp, flags)
}

// storeRec is store with a trailer written after the value (a tagged
// item's tag list; nil for every other record).
func (sp *Space) storeRec(sh *shard, kind uint8, id uint32, h uint64, key string, val, trailer []byte, exp int64, owner uint32) (uint64, uint64, error) {
	// One lookup serves the placement and the publish below, unless the
	// write's reserve moved or evicted the key's old record (its slot changed).
	s := sp.find(sh, h, id, key)
	var was uint64
	if s.valid() {
		was = s.b.slots[s.i].Load() &^ freqMask
	}
	off, err := sp.writeRec(sh, s, kind, id, h, key, val, trailer, exp, owner) // may evict, even key's old record
	if err != nil {
		return 0, 0, err
	}
	if s.valid() && s.b.slots[s.i].Load()&^freqMask != was {
		s = sp.find(sh, h, id, key)
	}
	r := sp.rec(off)
	w := h>>48<<48 | off
	if s.valid() {
		w |= s.b.slots[s.i].Load() & freqMask // an overwrite keeps the key's access count
		old := sp.rec(s.off())
		wasLoading := old.kind == kindLoading
		sp.account(sh, old, -1)
		s.publish(w)
		old.ref |= refDead
		if wasLoading {
			sh.h.ev.Wake()
		}
	} else if err := sp.insert(sh, h, w); err != nil {
		return 0, 0, err
	}
	sp.account(sh, r, +1)
	var jend uint64
	if kind == kindItem {
		jend = sp.journalChangeMeta(opSet, id, sp.recKey(off, r), val, exp, uint8(owner)<<1, trailer)
	}
	return off, jend, nil
}

// Del deletes key and returns its old value and whether it had one. Watchers
// are told. A key being loaded is left to its loader. In a distributed cache
// the key is deleted in the second tier first (an error there deletes
// nothing), the old value is this host's, and a load in progress stores
// nothing. In a persistent cache,
// Del returns errors as Set does (ErrPersistFailing, ErrNotDurable).
func (c *Cache) Del(ctx context.Context, key string) ([]byte, bool, error) {
	if err := c.check(key); err != nil {
		return nil, false, err
	}
	sp := c.sp
	if r := c.remote(); r != nil {
		if goOn, err := c.remoteWrite(r, "del", key, r.Del(ctx, c.name, key)); !goOn {
			return nil, false, err
		}
		// A load of the key in progress may have read the old value.
		defer c.invalidate(ctx, key, false)
	}
	if c.opts.Persist {
		if err := c.refuseIfFailing(); err != nil {
			return nil, false, fmt.Errorf("cache %q: del %q: %w", c.name, key, err)
		}
		c.throttle(ctx)
	}
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return nil, false, fmt.Errorf("cache %q: del %q: %w", c.name, key, err)
	}
	unlocked := false
	defer func() {
		if !unlocked {
			sp.unlock(sh)
		}
	}()
	s := sp.find(sh, h, c.id, key)
	if !s.valid() {
		return nil, false, nil
	}
	off := s.off()
	r := sp.rec(off)
	switch {
	case r.kind == kindLoading:
		return nil, false, nil
	case r.kind != kindItem:
		sp.drop(sh, s, opDel)
		return nil, false, nil
	case r.exp != 0 && r.exp <= time.Now().UnixNano():
		sp.drop(sh, s, opExpire)
		return nil, false, nil
	}
	old := append([]byte{}, sp.recVal(off, r)...)
	jend := sp.drop(sh, s, opDel)
	sp.unlock(sh)
	unlocked = true
	if err := c.awaitDurable(ctx, jend); err != nil {
		return old, true, fmt.Errorf("cache %q: del %q: %w", c.name, key, err)
	}
	return old, true, nil
}

// Keys returns every key of the cache that has a live value, in no order. It
// takes each shard's lock in turn, so it sees each shard at one instant but
// not the whole cache at one instant.
func (c *Cache) Keys(ctx context.Context) ([]string, error) {
	if c.isClosed() {
		return nil, fmt.Errorf("cache %q: %w", c.name, ErrClosed)
	}
	sp := c.sp
	var keys []string
	now := time.Now().UnixNano()
	for si := range sp.sh {
		sh := &sp.sh[si]
		if sh.pc[c.id].entries.Load() == 0 {
			continue
		}
		if err := sp.lock(ctx, sh); err != nil {
			return nil, fmt.Errorf("cache %q: keys: %w", c.name, err)
		}
		sp.liveItems(sh, now, func(off uint64, r *recHdr) {
			if r.cache == c.id {
				keys = append(keys, string(sp.recKey(off, r)))
			}
		})
		sp.unlock(sh)
	}
	return keys, nil
}

// Entry is what Inspect tells of one key.
type Entry struct {
	Value   []byte
	Persist bool          // the cache's Persist option
	TTL     time.Duration // time left to live; 0 means the entry never expires
}

// Inspect returns key's value with its cache's persist flag and the time it
// has left to live. A key without a value returns ErrNotFound.
func (c *Cache) Inspect(key string) (Entry, error) {
	if err := c.check(key); err != nil {
		return Entry{}, err
	}
	sp := c.sp
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sp.lock(ctx, sh); err != nil {
		return Entry{}, fmt.Errorf("cache %q: inspect %q: %w", c.name, key, err)
	}
	defer sp.unlock(sh)
	s := sp.find(sh, h, c.id, key)
	if s.valid() {
		off := s.off()
		r := sp.rec(off)
		now := time.Now().UnixNano()
		if r.kind == kindItem && (r.exp == 0 || r.exp > now) {
			e := Entry{Value: append([]byte{}, sp.recVal(off, r)...), Persist: c.opts.Persist}
			if r.exp != 0 {
				e.TTL = time.Duration(r.exp - now)
			}
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("cache %q: inspect %q: %w", c.name, key, ErrNotFound)
}

// Stats are a cache's counters, summed over every process of the cluster
// (each process publishes its own every 100 ms; the calling process's are
// exact).
type Stats struct {
	Hits, Misses      uint64 // lookups that found a value, and that did not
	Loads, LoadErrors uint64 // loader runs that stored a value, and that failed
	Evictions         uint64 // entries dropped to make room
	Expirations       uint64 // entries dropped because their time ran out
	Entries           int64  // live entries now
	Bytes             int64  // bytes those entries take in the arena
	WatchLost         uint64 // journal records this process's watchers missed (lapped)

	// The loader options' counters (Options).
	StaleServes    uint64 // expired values Get returned while a load went on (StaleFor, SoftTimeout)
	FailSafeServes uint64 // expired values Get returned in place of a loader's error or timeout (FailSafeFor)
	Refreshes      uint64 // background loads started (StaleFor, RefreshAhead)
	NegativeHits   uint64 // Gets answered "not found" from the cache (NotFoundExpire)

	CounterOps       uint64 // Add calls that changed a counter
	CASFailures      uint64 // CompareAndSwap calls whose old value did not match
	TagInvalidations uint64 // InvalidateTag calls
	Clears           uint64 // Clear calls
}

// Stats returns the cache's counters. It never writes shared memory.
func (c *Cache) Stats() Stats {
	sp := c.sp
	var st Stats
	me := sp.p.Slot()
	for slot := range len(sp.stats) / MaxCaches { // the rows Attach checked, not the header's word
		if slot == me {
			l := &sp.local[c.id]
			h, m := l.sums()
			st.Hits += h
			st.Misses += m
			st.Loads += l.loads.Load()
			st.LoadErrors += l.loadErrors.Load()
			st.CounterOps += l.counterOps.Load()
			st.CASFailures += l.casFails.Load()
			st.StaleServes += l.staleServes.Load()
			st.FailSafeServes += l.failSafeServes.Load()
			st.Refreshes += l.refreshes.Load()
			st.NegativeHits += l.negativeHits.Load()
			continue
		}
		row := &sp.stats[slot*MaxCaches+int(c.id)]
		st.Hits += row.hits.Load()
		st.Misses += row.misses.Load()
		st.Loads += row.loads.Load()
		st.LoadErrors += row.loadErrors.Load()
		st.CounterOps += row.counterOps.Load()
		st.CASFailures += row.casFails.Load()
		st.StaleServes += row.staleServes.Load()
		st.FailSafeServes += row.failSafeServes.Load()
		st.Refreshes += row.refreshes.Load()
		st.NegativeHits += row.negativeHits.Load()
	}
	st.TagInvalidations = sp.h.ops[c.id].tagInvals.Load()
	st.Clears = sp.h.ops[c.id].clears.Load()
	for si := range sp.sh {
		pc := &sp.sh[si].pc[c.id]
		st.Evictions += pc.evictions.Load()
		st.Expirations += pc.expirations.Load()
		st.Entries += pc.entries.Load()
		st.Bytes += pc.bytes.Load()
	}
	st.WatchLost = sp.watchLost.Load()
	return st
}

// errText is a loader error carried across processes as its text.
type errText string

func (e errText) Error() string { return string(e) }

func loaderErr(name, key string, text []byte) error {
	return fmt.Errorf("cache %q: get %q: %w: %w", name, key, ErrLoaderFailed, errText(text))
}
