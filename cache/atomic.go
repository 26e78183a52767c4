package cache

// Atomic operations: counters (Add), compare-and-swap, set-if-absent.
//
// Each runs under the key's shard lock, so it is atomic across processes: it
// reads the current record, decides, and writes the replacement record
// (Set's store: a new record at the log's head, the slot republished inside
// the bucket's seqlock, one journal record) before any other writer of the
// shard runs. Readers stay lock-free: they see the old value or the new one.
// A process killed inside one leaves what a Set killed at the same step
// leaves (doc.go, The write path): the old value or the new one, never a
// mix, and a half-written record no slot points at. The exception is an Add
// to an existing counter, which stores its 8 bytes in place inside the
// bucket's seqlock (addInPlace: the same guarantees, a single store).
//
// A counter is an item with the itemCounter flag (the record's owner word)
// and an 8-byte value, a little-endian two's-complement int64, so a Get of a
// counter returns those 8 bytes (CounterValue decodes them). The flag makes
// "a counter op on a non-counter value" decidable: an 8-byte value stored by
// Set is not a counter, and Add refuses it with ErrNotCounter. A counter is
// journalled and logged as the value it holds after each Add (the journal's
// opSet with jflagCounter, the log's OpSetMeta), not as the delta, so the log
// stays a list of idempotent sets and a replay or snapshot restores the
// counter with its flag.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/persist"
)

// AddOptions tune one Add. The zero value creates an absent counter at 0
// (so it holds delta after the Add) with the cache's Expire.
type AddOptions struct {
	// Initial is the value an absent (or expired) counter starts from:
	// the Add stores Initial+delta.
	Initial int64

	// Expire and ExpireAt give a counter the Add creates its time to live,
	// as SetOptions' do; an Add to an existing counter keeps its deadline
	// (a fixed window ends when it ends, however often it is added to).
	Expire   time.Duration
	ExpireAt time.Time

	// Tags are the tags of a counter the Add creates (see SetOptions.Tags);
	// an existing counter keeps its own.
	Tags []string
}

// Add adds delta to the counter under key and returns its new value, in one
// step atomic across every process of the cluster. An absent or expired key
// becomes a counter holding opts.Initial+delta, with opts' time to live. A
// key holding a value that is not a counter returns an error wrapping
// ErrNotCounter, and a sum outside the int64 range one wrapping ErrOverflow;
// neither changes anything. Watchers hear each Add as an OpSet whose Value
// is the new value's 8 bytes. In a persistent cache the new value is logged
// (errors as for Set: ErrPersistFailing stores nothing, ErrNotDurable comes
// with the stored value). A distributed cache (see Space.Distribute) refuses
// it with an error wrapping errors.ErrUnsupported.
func (c *Cache) Add(ctx context.Context, key string, delta int64, opts AddOptions) (int64, error) {
	if err := c.check(key); err != nil {
		return 0, err
	}
	if err := c.refuseDistributed("add", key); err != nil {
		return 0, err
	}
	tags, err := encodeTags(opts.Tags)
	if err != nil {
		return 0, fmt.Errorf("cache %q: add %q: %w", c.name, key, err)
	}
	exp := c.deadline(opts.Expire)
	if !opts.ExpireAt.IsZero() {
		exp = opts.ExpireAt.UnixNano()
	}
	sp := c.sp
	if err := c.beforeWrite(ctx); err != nil {
		return 0, fmt.Errorf("cache %q: add %q: %w", c.name, key, err)
	}
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return 0, fmt.Errorf("cache %q: add %q: %w", c.name, key, err)
	}
	if off, r, s, ok := c.liveSlot(sh, h, key); ok {
		// An existing counter changes in place (see addInPlace).
		if r.owner&itemCounter == 0 || r.vlen != 8 {
			sp.unlock(sh)
			return 0, fmt.Errorf("cache %q: add %q: %w (a value of %d bytes)", c.name, key, ErrNotCounter, r.vlen)
		}
		v := sp.recVal(off, r)
		base := int64(binary.LittleEndian.Uint64(v))
		n, ok := addInt64(base, delta)
		if !ok {
			sp.unlock(sh)
			return base, fmt.Errorf("cache %q: add %q: %w: %d + %d", c.name, key, ErrOverflow, base, delta)
		}
		addInPlace(s, v, n)
		jend := sp.journalChangeMeta(opSet, c.id, sp.recKey(off, r), v, r.exp, uint8(r.owner)<<1, sp.recTags(off, r))
		sp.unlock(sh)
		return c.added(ctx, key, n, jend)
	}
	if exp != 0 && exp <= time.Now().UnixNano() {
		sp.unlock(sh)
		return 0, fmt.Errorf("cache %q: add %q: %w: ExpireAt %v has passed", c.name, key, ErrInvalidConfig, opts.ExpireAt)
	}
	n, ok := addInt64(opts.Initial, delta)
	if !ok {
		sp.unlock(sh)
		return 0, fmt.Errorf("cache %q: add %q: %w: %d + %d", c.name, key, ErrOverflow, opts.Initial, delta)
	}
	flags := uint32(itemCounter)
	if len(tags) > 0 {
		flags |= itemTagged
	}
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], uint64(n))
	_, jend, err := sp.storeItem(sh, c.id, h, key, v[:], exp, flags, tags)
	sp.unlock(sh)
	if err != nil {
		return 0, fmt.Errorf("cache %q: add %q: %w", c.name, key, err)
	}
	return c.added(ctx, key, n, jend)
}

// added counts an Add that changed counter key to n and waits for its
// journal record at jend as Set does.
func (c *Cache) added(ctx context.Context, key string, n int64, jend uint64) (int64, error) {
	c.sp.local[c.id].counterOps.Add(1)
	if err := c.awaitDurable(ctx, jend); err != nil {
		return n, fmt.Errorf("cache %q: add %q: %w", c.name, key, err)
	}
	return n, nil
}

// addInPlace stores n into the 8 value bytes v of the counter record that
// slot s points at, inside the bucket's seqlock: the one other change of a
// record in place besides failInPlace (doc.go, fence 2). Lock-free readers
// copying the value see the sequence odd or changed and retry; a process
// killed here leaves an odd sequence (repair evens it) and the value old or
// new: PutUint64 compiles to one 8-byte store on amd64 and arm64, which a
// signal cannot split. It saves the new record, its reclaiming and the
// slot's republication (250 ns an Add with them, in BenchmarkCacheAdd).
func addInPlace(s slotRef, v []byte, n int64) {
	s.b.seq.Add(1)
	order.StoreFence() // arm64: the odd sequence before the plain store in place (doc.go, fence 2)
	binary.LittleEndian.PutUint64(v, uint64(n))
	s.b.seq.Add(1) // even: release
}

// addInt64 returns a+b and whether it did not overflow.
func addInt64(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// Counter returns the value of the counter under key and whether it has
// one. A key holding a value that is not a counter returns ErrNotCounter. It
// reads under the key's shard lock (to see the counter flag); GetInto with
// CounterValue reads a counter lock-free.
func (c *Cache) Counter(ctx context.Context, key string) (int64, bool, error) {
	if err := c.check(key); err != nil {
		return 0, false, err
	}
	sp := c.sp
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return 0, false, fmt.Errorf("cache %q: counter %q: %w", c.name, key, err)
	}
	defer sp.unlock(sh)
	off, r, ok := c.liveItem(sh, h, key)
	if !ok {
		return 0, false, nil
	}
	if r.owner&itemCounter == 0 || r.vlen != 8 {
		return 0, false, fmt.Errorf("cache %q: counter %q: %w (a value of %d bytes)", c.name, key, ErrNotCounter, r.vlen)
	}
	return int64(binary.LittleEndian.Uint64(sp.recVal(off, r))), true, nil
}

// CounterValue decodes a counter's value as Get and GetInto return it (8
// bytes, little-endian); ok is false for a value of another length.
func CounterValue(v []byte) (n int64, ok bool) {
	if len(v) != 8 {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(v)), true
}

// CompareAndSwap stores new under key if key's value is old (byte for byte)
// and reports whether it did, in one step atomic across every process. A
// key without a value (absent, expired, being loaded) returns false with an
// error wrapping ErrNotFound; a value other than old returns false and nil
// (counted in Stats.CASFailures). Nothing is changed unless it returns true.
// opts apply as for Set (the new value gets the cache's Expire unless opts
// say otherwise; LeaveIfNotNull is ignored); the stored value is a plain
// value, even over a counter. Watchers hear a swap as an OpSet; a
// persistent cache returns errors as Set does. A distributed cache (see
// Space.Distribute) refuses it with an error wrapping errors.ErrUnsupported,
// as it refuses Add.
func (c *Cache) CompareAndSwap(ctx context.Context, key string, old, new []byte, opts SetOptions) (bool, error) {
	if err := c.check(key); err != nil {
		return false, err
	}
	if err := c.refuseDistributed("cas", key); err != nil {
		return false, err
	}
	tags, exp, err := c.setArgs(key, new, opts)
	if err != nil {
		return false, fmt.Errorf("cache %q: cas %q: %w", c.name, key, err)
	}
	sp := c.sp
	if err := c.beforeWrite(ctx); err != nil {
		return false, fmt.Errorf("cache %q: cas %q: %w", c.name, key, err)
	}
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return false, fmt.Errorf("cache %q: cas %q: %w", c.name, key, err)
	}
	off, r, ok := c.liveItem(sh, h, key)
	if !ok {
		sp.unlock(sh)
		return false, fmt.Errorf("cache %q: cas %q: %w", c.name, key, ErrNotFound)
	}
	if !bytes.Equal(sp.recVal(off, r), old) {
		sp.unlock(sh)
		sp.local[c.id].casFails.Add(1)
		return false, nil
	}
	if exp != 0 && exp <= time.Now().UnixNano() { // ExpireAt in the past: as Set, nothing stored
		sp.unlock(sh)
		return false, nil
	}
	var flags uint32
	if len(tags) > 0 {
		flags = itemTagged
	}
	_, jend, err := sp.storeItem(sh, c.id, h, key, new, exp, flags, tags)
	sp.unlock(sh)
	if err != nil {
		return false, fmt.Errorf("cache %q: cas %q: %w", c.name, key, err)
	}
	if err := c.awaitDurable(ctx, jend); err != nil {
		return true, fmt.Errorf("cache %q: cas %q: %w", c.name, key, err)
	}
	return true, nil
}

// SetIfAbsent stores value under key only if the key has no value (absent,
// expired or being loaded) and reports whether it did: Set with
// LeaveIfNotNull, atomic across every process (one of several concurrent
// callers wins).
func (c *Cache) SetIfAbsent(ctx context.Context, key string, value []byte, opts SetOptions) (bool, error) {
	opts.LeaveIfNotNull = true
	return c.Set(ctx, key, value, opts)
}

// liveItem returns key's unexpired item under the shard lock, if any.
func (c *Cache) liveItem(sh *shard, h uint64, key string) (uint64, *recHdr, bool) {
	off, r, _, ok := c.liveSlot(sh, h, key)
	return off, r, ok
}

// liveSlot is liveItem with the item's slot.
func (c *Cache) liveSlot(sh *shard, h uint64, key string) (uint64, *recHdr, slotRef, bool) {
	sp := c.sp
	s := sp.find(sh, h, c.id, key)
	if !s.valid() {
		return 0, nil, slotRef{}, false
	}
	off := s.off()
	r := sp.rec(off)
	if r.kind != kindItem || r.exp != 0 && r.exp <= time.Now().UnixNano() {
		return 0, nil, slotRef{}, false
	}
	return off, r, s, true
}

// setArgs checks a Set's value and tags against the cache's limits and
// returns the encoded tag list and the deadline (one in the past when
// opts.ExpireAt has passed: the caller stores nothing).
func (c *Cache) setArgs(key string, value []byte, opts SetOptions) ([]byte, int64, error) {
	tags, err := encodeTags(opts.Tags)
	if err != nil {
		return nil, 0, err
	}
	if limit := c.maxValue(); len(value)+len(tags) > limit {
		return nil, 0, fmt.Errorf("value of %d bytes (tags %d): %w (limit %d)", len(value), len(tags), ErrValueTooLarge, limit)
	}
	exp := c.deadline(opts.Expire)
	if !opts.ExpireAt.IsZero() {
		if exp = opts.ExpireAt.UnixNano(); exp <= 0 {
			exp = math.MinInt64 + 1 // in the past, never 0 (never expires)
		}
	}
	return tags, exp, nil
}

// beforeWrite is what every write of a persistent cache does before it takes
// the shard lock: refuse while the log writer cannot write its log, and wait
// while the log writer lags (throttle).
func (c *Cache) beforeWrite(ctx context.Context) error {
	if !c.opts.Persist {
		return nil
	}
	if err := c.refuseIfFailing(); err != nil {
		return err
	}
	c.throttle(ctx)
	return nil
}

// restoreMeta applies a logged OpSetMeta (a counter, a tagged entry) without
// journaling it: the value with its flags and tag list, as the log has them.
// A value the cache cannot have written returns an error wrapping
// ErrCorrupt.
func (c *Cache) restoreMeta(ctx context.Context, m persist.Mutation) error {
	flags := uint32(m.Flags)
	val, tags := m.Value, []byte(nil)
	if flags&itemTagged != 0 {
		n, ok := tagListLen(val)
		if !ok {
			return fmt.Errorf("%w: cache %q key %q: a tagged value without a tag list", ErrCorrupt, c.name, m.Key)
		}
		tags, val = val[:n], val[n:]
	}
	switch {
	case flags&^(itemCounter|itemTagged) != 0:
		return fmt.Errorf("%w: cache %q key %q: unknown value flags %#x", ErrCorrupt, c.name, m.Key, flags)
	case flags&itemCounter != 0 && len(val) != 8:
		return fmt.Errorf("%w: cache %q key %q: a counter of %d bytes", ErrCorrupt, c.name, m.Key, len(val))
	case len(m.Key) == 0 || len(m.Key) > MaxKeyLen || len(val)+len(tags) > c.maxValue():
		return fmt.Errorf("%w: cache %q key %q: key or value out of bounds", ErrCorrupt, c.name, m.Key)
	}
	sp := c.sp
	h := hashKey(c.id, m.Key)
	sh := sp.shardOf(h)
	if err := sp.lock(ctx, sh); err != nil {
		return fmt.Errorf("cache %q: restore %q: %w", c.name, m.Key, err)
	}
	_, _, err := sp.storeItem(sh, c.id, h, m.Key, val, m.ExpireAt, flags, tags)
	sp.unlock(sh)
	if err != nil {
		return fmt.Errorf("cache %q: restore %q: %w", c.name, m.Key, err)
	}
	return nil
}
