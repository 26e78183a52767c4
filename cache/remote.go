package cache

// Distributed caches: a second tier behind the arena (package bridge: Redis).
//
// # Design
//
// A cache named in Space.Distribute has a Remote in this process. The arena
// stays the first tier, read lock-free as before: a hit never consults the
// Remote (GetInto and get are unchanged). The Remote is consulted on the
// paths that already leave the hit path:
//
//   - a miss of Get with a loader: in the process that holds the key's
//     loading record (loader-once across the host's processes, unchanged),
//     the load asks the Remote first (its TTL caps the local one), and only
//     when it has no value runs the user's loader and offers the result to
//     the Remote (which keeps a value another host stored meanwhile, and
//     returns that one instead); a Remote that is a LoadLocker may first
//     make it wait for another host's load (one loader in the fleet);
//   - Set, Del, InvalidateTag and Clear write the Remote first; only a
//     write the Remote acknowledged changes the arena. A Set or Del then
//     drops the key locally (Invalidate's drop, never a stale mark): the
//     next Get reads the Remote, which has the value (read your writes). It
//     does not store the value locally: the write's own invalidation (see
//     below) comes back to this host and would race the store.
//
// Invalidate and InvalidateAll are how the host's tracking connection
// (bridge.Bridge.Track, in the master) tells the arena that a key changed
// in the second tier. Both run under the key's shard lock and:
//
//   - drop the key's item (watchers hear OpDel), or, when the cache keeps
//     expired values (StaleFor, FailSafeFor), mark it stale: its deadline
//     becomes now, in place inside the bucket's seqlock, as failInPlace
//     changes a record (kept then until now + max(StaleFor, FailSafeFor),
//     its horizon; watchers hear nothing, as for a deadline that passes);
//   - drop the key's loading record, and the loading or failed record of
//     its shadow (a refresh beside the item, the fail-safe's pause), waking
//     the waiters. This is what makes a load safe: a load marks the key
//     before it reads the Remote, and the change that makes what it read
//     stale is followed by an invalidation that finds the mark and removes
//     it, so the load's finish finds no record of its own and stores
//     nothing (its caller gets the value it read: a read concurrent with
//     the write). A waiter then loads again, and reads the new value.
//
// A write's own invalidation always comes back (BCAST tracking without
// NOLOOP: the writer is a worker's connection, not the tracking one). It
// finds nothing to drop, or the value a load stored after the write, which
// is the new one: the cost is one more Remote GET on the writing host.
//
// # Tracking
//
// What makes a load safe above needs the invalidation to arrive: it does
// only while the host's tracking connection is up. A value read from the
// Remote while it is not (Redis back after a restart, the tracking
// connection still waiting out its back-off; or only that connection lost)
// gets no invalidation for a change made after the read, and a stale mark
// made later (InvalidateAll when tracking resumes) would let fail-safe serve
// it for FailSafeFor from the mark, not from the read. So the space holds a
// tracking epoch (spaceHeader.tracking; Space.BeginTracking and
// EndTracking, called by the process that tracks): odd while every change
// reaches Invalidate, even while changes may be missed, larger at each
// change of state. A load of
// a distributed cache reads the epoch before it asks the Remote, and its
// finish reads it again under the key's shard lock: unless the first was
// odd and the second is the same, the load is untracked, and its value is
// stored already stale (deadline now: a kept value, served as fail-safe for
// FailSafeFor from the read at most, revalidated by the next Get) or, when
// the cache keeps no expired values, not at all (the loading record goes;
// waiters load for themselves). An untracked "not found" stores no negative
// record. The caller gets what it read either way.
//
// Order: EndTracking changes the epoch before InvalidateAll takes
// any shard lock, and InvalidateAll marks every key under its shard lock;
// a finish takes the same lock before it reads the epoch. A finish that
// stored before InvalidateAll reached its shard has its value marked stale
// by it; one after it reads the new epoch (the lock orders the two). On
// resuming, InvalidateAll runs before BeginTracking: a load that read
// the odd epoch asked the Remote after tracking was on again, and every
// later change is invalidated. The epoch is an atomic word (sequentially
// consistent on amd64 and arm64), the shard lock a robust futex lock
// (acquire on lock, release on unlock): no plain store is involved.
// A tracker killed with kill -9 leaves its epoch running; in a cluster the
// master is the tracker and its workers do not outlive it, and the next
// tracker (an in-place upgrade's new master) ends it with EndTracking(0)
// before it connects. An old tracker's EndTracking after a newer one began
// changes nothing.
//
// Memory order: the stale mark is failInPlace's (odd sequence, StoreFence,
// plain stores, even sequence); drops are publish's. A process killed
// inside either leaves what those leave (an odd sequence the lock's repair
// fixes; the index is the truth).
//
// A distributed cache is not persistent (Redis is its durable tier): Use
// refuses Persist for a distributed name.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/internal/order"
)

// Remote is a distributed cache's second tier, shared by every host of a
// fleet: package bridge implements it on Redis. Its methods may block on the
// network (bounded by ctx) and are called outside every lock, never on a
// hit. An error that errors.Is ErrRemoteDown means the tier could not be
// reached; any other error is the tier's answer.
type Remote interface {
	// Get returns key's value in cache and its time left to live (0: none),
	// or found false.
	Get(ctx context.Context, cache, key string) (v []byte, ttl time.Duration, found bool, err error)

	// Set stores value under key with ttl (0: never expires) and tags.
	// With onlyIfAbsent it stores only when the key has no value, and
	// reports whether it stored; it returns the value the key has then
	// (value itself, or the one that stayed).
	Set(ctx context.Context, cache, key string, value []byte, ttl time.Duration, tags []string, onlyIfAbsent bool) (stored bool, now []byte, err error)

	// Del deletes key.
	Del(ctx context.Context, cache, key string) error

	// InvalidateTag deletes every key of cache that was stored with tag
	// and returns them.
	InvalidateTag(ctx context.Context, cache, tag string) (keys []string, err error)

	// Clear deletes every key of cache.
	Clear(ctx context.Context, cache string) error

	// LocalWrites reports whether a write may change the arena alone while
	// the tier is down (else it returns the ErrRemoteDown error).
	LocalWrites() bool
}

// LoadLocker is a Remote that can make one host of the fleet at a time run
// a key's loader (package bridge: Config.FleetLoad). A load whose Remote
// has no value for its key calls LockLoad before it runs the user's loader:
// found, it returns that value (another host loaded it meanwhile); with
// unlock, it runs the loader, offers the value to the Remote, then calls
// unlock; with neither, it runs the loader without the lock (the option is
// off, or the wait ended). An error that is not the caller's context ending
// costs only the option: the load goes on without the lock.
type LoadLocker interface {
	LockLoad(ctx context.Context, cache, key string) (v []byte, ttl time.Duration, found bool, unlock func(), err error)
}

// Distribute makes the cache called name distributed in this process: its
// misses and writes go through r (see Remote and the package doc's
// "Distributed caches"). Every process of the cluster must distribute the
// same names (package cluster2 does it from Config.Cache.Redis before the
// user's code runs); a handle opened before keeps working and sees r from
// its next call. A nil r makes the name local again. It is an error
// (ErrInvalidConfig) for a name already in use with Persist.
func (sp *Space) Distribute(name string, r Remote) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if _, opts, ok := sp.findName(name); ok && opts.Persist && r != nil {
		return fmt.Errorf("cache %q: %w: a distributed cache cannot be persistent", name, ErrInvalidConfig)
	}
	m := map[string]Remote{}
	if old := sp.remotes.Load(); old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	if r == nil {
		delete(m, name)
	} else {
		m[name] = r
	}
	sp.remotes.Store(&m)
	return nil
}

// remoteOf returns the Remote of the cache called name, or nil.
func (sp *Space) remoteOf(name string) Remote {
	if m := sp.remotes.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

// remoteView is a cache's Remote as read from one Distribute map.
type remoteView struct {
	m *map[string]Remote
	r Remote
}

// remote returns c's Remote, or nil for a cache that is not distributed:
// the view c's base keeps while Distribute's map is the same, else a
// lookup that renews it.
func (c *Cache) remote() Remote {
	m := c.sp.remotes.Load()
	if m == nil {
		return nil
	}
	if v := c.base.rv.Load(); v != nil && v.m == m {
		return v.r
	}
	r := (*m)[c.name]
	c.base.rv.Store(&remoteView{m: m, r: r})
	return r
}

// Distributed reports whether the cache is distributed in this process (see
// Space.Distribute).
func (c *Cache) Distributed() bool { return c.remote() != nil }

// BeginTracking starts a tracking epoch and returns it: every change of the
// distributed caches' second tier reaches this space's Invalidate from now
// on (the host's tracking connection is up). The process that tracks calls
// it (package bridge, in the master) after it marked every entry stale on
// getting its connection back, and EndTracking with the epoch before it
// marks them when the connection is lost. Between epochs, what a load reads
// from the tier is kept only as stale (see "Tracking" in the design above).
// A new space has none.
func (sp *Space) BeginTracking() uint64 {
	for {
		e := sp.h.tracking.Load()
		n := e + 1 + e&1 // the next odd: another tracker's epoch ends too
		if sp.h.tracking.CompareAndSwap(e, n) {
			return n
		}
	}
}

// EndTracking ends tracking epoch epoch if it is still the space's (a newer
// tracker's is left alone); epoch 0 ends whichever runs (a new tracker's
// first step: its predecessor may have been killed while tracking).
func (sp *Space) EndTracking(epoch uint64) {
	for {
		e := sp.h.tracking.Load()
		if e&1 == 0 || epoch != 0 && e != epoch || sp.h.tracking.CompareAndSwap(e, e+1) {
			return
		}
	}
}

// Tracking reports whether a tracking epoch runs (BeginTracking).
func (sp *Space) Tracking() bool { return sp.h.tracking.Load()&1 == 1 }

// loaded is what a load's loader (callLoad) gives finish.
type loaded struct {
	v   []byte
	ttl time.Duration // the value's local time to live, when not 0 (the second tier capped it); else the cache's Expire
	err error
	// distributed says the load went through the second tier; epoch is the
	// space's tracking epoch it read before it did (see "Tracking").
	distributed bool
	epoch       uint64
}

// untracked reports whether l's value may have changed in the second tier
// without an invalidation reaching the arena (see "Tracking"); the caller
// holds the key's shard lock.
func (sp *Space) untracked(l loaded) bool {
	return l.distributed && (l.epoch&1 == 0 || sp.h.tracking.Load() != l.epoch)
}

// callLoad runs a load's loader for key: for a distributed cache the Remote
// first, then loader (see the design above). kept says the load has an
// expired value to serve instead of an error (fail-safe): then a Remote that
// is down fails the load, so that the kept value is served; without one,
// the user's loader runs and its value is stored locally only.
func (c *Cache) callLoad(ctx context.Context, key string, loader Loader, kept bool) loaded {
	r := c.remote()
	if r == nil {
		v, err := callLoader(ctx, key, loader)
		return loaded{v: v, err: err}
	}
	l := loaded{distributed: true, epoch: c.sp.h.tracking.Load()}
	v, rttl, found, rerr := r.Get(ctx, c.name, key)
	switch {
	case rerr == nil && found:
		l.v, l.ttl = v, c.capTTL(rttl)
		return l
	case rerr != nil && kept:
		l.err = fmt.Errorf("second tier: %w", rerr)
		return l
	}
	if ll, ok := r.(LoadLocker); ok && rerr == nil {
		v, rttl, found, unlock, lerr := ll.LockLoad(ctx, c.name, key)
		switch {
		case lerr != nil && ctx.Err() != nil:
			l.err = lerr
			return l
		case lerr == nil && found:
			l.v, l.ttl = v, c.capTTL(rttl)
			return l
		case unlock != nil:
			defer unlock() // once the value is offered to the Remote
		}
	}
	l.v, l.err = callLoader(ctx, key, loader)
	if l.err != nil || rerr != nil {
		return l
	}
	if _, now, serr := r.Set(ctx, c.name, key, l.v, c.opts.Expire, nil, true); serr == nil {
		l.v = now // another host's value, if it stored one first
	}
	return l
}

// capTTL is the local time to live of a value the Remote has for ttl more:
// ttl when it ends before the cache's Expire would, else 0 (the Expire).
func (c *Cache) capTTL(ttl time.Duration) time.Duration {
	if ttl > 0 && (c.opts.Expire == 0 || ttl < c.opts.Expire) {
		return ttl
	}
	return 0
}

// remoteWrite runs a write's second-tier part, do, for "verb subject", and reports
// whether the write goes on locally: do succeeded, or the tier is down and
// the Remote allows local writes (then do's error is dropped). Otherwise it
// returns do's error, wrapped; the message is formatted only then (no
// allocation on a write that succeeds).
func (c *Cache) remoteWrite(r Remote, verb, subject string, err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrRemoteDown) && r.LocalWrites():
		return true, nil
	}
	if subject != "" {
		return false, fmt.Errorf("cache %q: %s %q: %w", c.name, verb, subject, err)
	}
	return false, fmt.Errorf("cache %q: %s: %w", c.name, verb, err)
}

// setRemote is a distributed cache's Set: the value goes to the second tier
// first; once it is there the key is dropped locally (the next Get reads the
// tier: see the design). local says the tier is down and the Remote allows
// local writes: Set goes on in the arena alone.
func (c *Cache) setRemote(ctx context.Context, r Remote, key string, value []byte, exp int64, opts SetOptions) (ok, local bool, err error) {
	var ttl time.Duration
	if exp != 0 {
		ttl = time.Duration(exp - time.Now().UnixNano())
	}
	stored, _, err := r.Set(ctx, c.name, key, value, ttl, opts.Tags, opts.LeaveIfNotNull)
	if err != nil {
		goOn, werr := c.remoteWrite(r, "set", key, err)
		return false, goOn, werr
	}
	if !stored {
		return false, false, nil // LeaveIfNotNull: the key has a value in the tier
	}
	return true, false, c.invalidate(ctx, key, false)
}

// Invalidate tells the cache that key changed in its second tier (package
// bridge calls it for Redis's invalidations): the key's value is dropped
// (watchers hear OpDel) or, when the cache keeps expired values (StaleFor,
// FailSafeFor), marked stale; a load of the key in progress, in any
// process, stores nothing (it may have read the old value). It is the
// design's "mark stale" entry point (remote.go). A key with nothing does
// nothing.
func (c *Cache) Invalidate(ctx context.Context, key string) error {
	if err := c.check(key); err != nil {
		return err
	}
	return c.invalidate(ctx, key, c.opts.keep() > 0)
}

// invalidate is Invalidate, staleMark saying whether a kept value is marked
// stale rather than dropped.
func (c *Cache) invalidate(ctx context.Context, key string, staleMark bool) error {
	sp := c.sp
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return fmt.Errorf("cache %q: invalidate %q: %w", c.name, key, err)
	}
	defer sp.unlock(sh)
	now := time.Now().UnixNano()
	if s := sp.find(sh, h, c.id, key); s.valid() {
		c.invalidateSlot(sh, s, sp.rec(s.off()), now, staleMark)
	}
	if s := sp.find(sh, h^shadowMix, c.id+shadowID, key); s.valid() {
		sp.drop(sh, s, opDel) // a refresh's marker or the fail-safe's pause: not items, never journaled
	}
	return nil
}

// invalidateSlot drops or marks stale the record r of slot s (see
// Invalidate), under the shard lock.
func (c *Cache) invalidateSlot(sh *shard, s slotRef, r *recHdr, now int64, staleMark bool) {
	switch {
	case r.kind == kindItem && staleMark:
		if r.exp == 0 || r.exp > now {
			s.b.seq.Add(1)
			order.StoreFence() // arm64: the odd sequence before the plain store in place (doc.go, fence 2)
			r.exp = now
			s.b.seq.Add(1)
		}
	default:
		c.sp.drop(sh, s, opDel)
	}
}

// InvalidateAll tells the cache that none of its entries can be trusted
// (package bridge calls it when its tracking connection was lost or made
// again, or Redis was flushed): every entry is dropped or marked stale, and
// every load in progress stores nothing, as by Invalidate of every key. It
// walks the cache's shards as Clear does.
func (c *Cache) InvalidateAll(ctx context.Context) error {
	if c.isClosed() {
		return fmt.Errorf("cache %q: %w", c.name, ErrClosed)
	}
	sp := c.sp
	staleMark := c.opts.keep() > 0
	for si := range sp.sh {
		sh := &sp.sh[si]
		for from := 0; from < len(sh.b); from += clearBatch {
			if err := sp.lock(ctx, sh); err != nil {
				return fmt.Errorf("cache %q: invalidate all: %w", c.name, err)
			}
			now := time.Now().UnixNano()
			for bi := from; bi < min(from+clearBatch, len(sh.b)); bi++ {
				b := &sh.b[bi]
				for i := range slotsPerBucket {
					_, r := sp.slotRec(sh, b, i)
					switch {
					case r == nil:
					case r.cache == c.id:
						c.invalidateSlot(sh, slotRef{b, i}, r, now, staleMark)
					case r.cache == c.id+shadowID:
						sp.drop(sh, slotRef{b, i}, opDel)
					}
				}
			}
			sp.unlock(sh)
		}
	}
	return nil
}

// noLoader is the loader of a distributed cache's Get without one: the
// second tier, then "not found".
func noLoader(context.Context, string) ([]byte, error) { return nil, ErrNotFound }

// refuseDistributed is the error of the operations a distributed cache does
// not distribute (Add, CompareAndSwap): they would be atomic on one host
// only.
func (c *Cache) refuseDistributed(op, key string) error {
	if c.remote() == nil {
		return nil
	}
	return fmt.Errorf("cache %q: %s %q: %w: a distributed cache's counters and compare-and-swap would be atomic on one host only", c.name, op, key, errors.ErrUnsupported)
}
