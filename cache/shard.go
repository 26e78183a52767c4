package cache

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/shm"
)

// offMask takes a slot word's record offset: bits 2-47 (the tag is above,
// the access count in bits 0-1, see freqMask).
const offMask = (1<<48 - 1) &^ freqMask

// logq is one of a shard's two logs (S3-FIFO's queues, doc.go # Eviction):
// the main log (the heap's first sp.heap bytes, head and tail) or the small
// log (the last sp.small bytes, shead and stail). Both are circular logs of
// records on recAlign boundaries, written at head and reclaimed at tail.
type logq struct {
	base, size uint64 // arena offset and bytes
	head, tail *atomic.Uint64
	small      bool
}

// fits reports whether a record of size bytes fits at lg's head (after a
// filler, at a wrap) leaving slack bytes free, without reclaiming anything.
func (lg logq) fits(size, slack uint64) bool {
	head, tail := lg.head.Load(), lg.tail.Load()
	free := lg.size - (head - tail)
	need := size
	if toEnd := lg.size - head%lg.size; toEnd < size {
		need = toEnd + size
	}
	return head-tail <= lg.size && free >= need+slack
}

func (sp *Space) mainLog(sh *shard) logq {
	return logq{sh.heapOff, sp.heap, &sh.h.head, &sh.h.tail, false}
}

func (sp *Space) smallLog(sh *shard) logq {
	return logq{sh.heapOff + sp.heap, sp.small, &sh.h.shead, &sh.h.stail, true}
}

// lookup results.
const (
	resMiss     = iota // no record for the key
	resHit             // an item, value appended
	resExpired         // an item past its deadline (and past its stale window)
	resLoading         // a loading record
	resFailed          // a failed record (value appended: the error text)
	resUnstable        // writers kept changing the bucket: ask under the lock
	resAhead           // an item in the last part of its life (read's ahead), value appended
	resStale           // an item past its deadline but within read's stale window, value appended
	resNegative        // a live negative record (a loader's "not found")
)

func hashKey(id uint32, key string) uint64 {
	h := xxhash.Sum64String(key)
	h ^= uint64(id+1) * 0x9E3779B97F4A7C15
	h ^= h >> 31
	return h
}

// A key's load marker is a record of the key in the shadow of its cache:
// cache id + shadowID, hash ^ shadowMix (another bucket and tag, the same
// shard: shadowMix's low byte is 0 and shards are at most 256). It is a
// loading record while a load runs beside the key's item (which stays
// readable: stale serving, refresh ahead, fail-safe), then a failed record
// for failedLinger if the load failed (the fail-safe's pause before the next
// load). It is never an item: Keys, Stats, the journal and the log do not
// see it, and lock-free readers of the key never meet it (find matches the
// cache id).
const (
	shadowID  = MaxCaches
	shadowMix = 0x9E37_79B9_7F4A_7C00
)

// recHash is the hash of a record of cache id (shadow ids included) and key.
func recHash(id uint32, key string) uint64 {
	if id >= shadowID {
		return hashKey(id-shadowID, key) ^ shadowMix
	}
	return hashKey(id, key)
}

func recSize(klen, vlen int) uint64 {
	return (recHeader + uint64(klen) + uint64(vlen) + recAlign - 1) &^ (recAlign - 1)
}

func (sp *Space) shardOf(h uint64) *shard { return &sp.sh[h&sp.smsk] }
func (sp *Space) home(h uint64) uint64    { return (h >> 8) & sp.bmsk }

func (sp *Space) rec(off uint64) *recHdr { return shm.Ptr[recHdr](sp.a, shm.Off(off)) }

// maxLoadingSize is the size of the largest loading record: a header and a
// key (moveLoading copies one through a buffer of that size).
const maxLoadingSize = (recHeader + MaxKeyLen + recAlign - 1) &^ (recAlign - 1)

// recAt returns the header of the record at arena offset off, or nil when
// off is not a record boundary of sh's heap or the header's lengths do not
// fit there (sane). A slot word, a sampled hit or anything else taken from
// shared memory goes through it before it is indexed with: a healthy space
// never fails it, a damaged one (bytes changed by a stray write, a bad
// disk image of the arena) fails it instead of a panic.
func (sp *Space) recAt(sh *shard, off uint64) *recHdr {
	if rel := off - sh.heapOff; off < sh.heapOff || rel > sp.region-recHeader || rel%recAlign != 0 {
		return nil
	}
	r := sp.rec(off)
	if !sp.sane(sh, off, r) {
		return nil
	}
	return r
}

// slotRec returns the offset and header of the record slot i of b points
// at, r nil for an empty slot. A slot whose word fails recAt (damage: no
// writer stores one) is cleared on the way and counted as a repair; the
// caller holds sh's lock, so it is the index's only writer.
func (sp *Space) slotRec(sh *shard, b *bucket, i int) (uint64, *recHdr) {
	w := b.slots[i].Load()
	if w == 0 {
		return 0, nil
	}
	off := w & offMask
	r := sp.recAt(sh, off)
	if r == nil {
		slotRef{b, i}.publish(0)
		sh.h.repairs.Add(1)
		return 0, nil
	}
	return off, r
}

// positionsOK reports whether head and tail are positions a writer can
// leave in lg: tail <= head, at most the log's size apart, both on a record
// boundary.
func positionsOK(lg logq, head, tail uint64) bool {
	return head >= tail && head-tail <= lg.size && (head|tail)%recAlign == 0
}

// tailOK reports whether the record r at the tail of lg (arena offset off,
// live bytes of the live log from it to head) is one a writer writes: a
// size on record boundaries inside the live log and lg, a known kind (in the
// small log only items, negative records and fillers), a non-filler's
// lengths inside its size, a loading record no larger than maxLoadingSize.
func (sp *Space) tailOK(sh *shard, lg logq, off, live uint64, r *recHdr) bool {
	phys := off - lg.base
	switch {
	case r.size < recHeader || r.size%recAlign != 0 || uint64(r.size) > live || phys+uint64(r.size) > lg.size:
		return false
	case r.kind == kindFree || r.kind > kindLast:
		return false
	case r.kind == kindFiller:
		return true
	case lg.small && !smallKind(r.kind):
		return false
	case r.kind == kindLoading && r.size > maxLoadingSize:
		return false
	}
	return sp.sane(sh, off, r)
}

// smallKind reports whether records of kind are written to the small log
// (when small enough and unknown to the ghost table): items and negative
// records. Loading and failed records always go to the main log (a loading
// record is never evicted: only the main tail moves it).
func smallKind(kind uint8) bool { return kind == kindItem || kind == kindNegative }

// recKey and recVal return the key and value bytes of a record whose header
// was validated against its shard's heap.
func (sp *Space) recKey(off uint64, r *recHdr) []byte {
	k := off + recHeader
	return sp.mem[k : k+uint64(r.klen) : k+uint64(r.klen)]
}

func (sp *Space) recVal(off uint64, r *recHdr) []byte {
	v := off + recHeader + uint64(r.klen)
	return sp.mem[v : v+uint64(r.vlen) : v+uint64(r.vlen)]
}

// sane reports whether the record header r at off fits inside sh's heap
// (the lock holders' check of a log they walk; the lock-free read makes the
// same checks on its own copies of the fields).
func (sp *Space) sane(sh *shard, off uint64, r *recHdr) bool {
	end := off + recHeader + uint64(r.klen) + uint64(r.vlen)
	return off >= sh.heapOff && end <= sh.heapOff+sp.region && int(r.vlen) <= sp.maxValue+MaxKeyLen &&
		uint64(r.size) >= end-off && off+uint64(r.size) <= sh.heapOff+sp.region
}

// read is the lock-free lookup. It appends the value (or a failed loader's
// error text) to dst. Get passes ahead (nanoseconds of refresh-ahead window
// per millisecond of an item's life) and stale (its cache's StaleFor) to
// hear of items in their last part of life (resAhead) or in their stale
// window (resStale); GetInto passes zeros, and a fresh hit costs the same
// either way: the two tests sit behind the deadline test the hit makes anyway.
// The only shared memory it writes is a hit's access count (touch: one CAS
// of the slot word it read, below freqMax), and every read of it is
// bounded by header fields loaded once into locals: whatever bytes a concurrent
// writer leaves where the record was, read returns a miss, a retry or the
// value that the final sequence check vouches for, never a panic. (A first
// version copied the 40-byte header into a local struct: 2-3 ns slower per
// hit than the fields loaded once into registers.)
func (sp *Space) read(sh *shard, h uint64, id uint32, key string, dst []byte, ahead, stale int64) ([]byte, int, uint64) {
	tag := h >> 48
	n := len(dst)
outer:
	for range 8 {
		bi := sp.home(h)
		for range maxProbe {
			b := &sh.b[bi]
			s1 := b.seq.Load() // acquire: slots and the records they point to are complete
			if s1&1 != 0 {
				continue outer
			}
			for i := range slotsPerBucket {
				w := b.slots[i].Load()
				if w == 0 || w>>48 != tag {
					continue
				}
				off := w & offMask
				// Each header field is loaded once, into a local: every
				// check and every slice below uses these copies only.
				// One subtraction covers off below the heap (it wraps), past
				// it and off a record boundary (a damaged slot word; the
				// race detector's checkptr refuses a misaligned header).
				if rel := off - sh.heapOff; rel > sp.region-recHeader || rel%recAlign != 0 {
					if b.seq.Load() != s1 {
						continue outer
					}
					continue
				}
				p := (*recHdr)(unsafe.Pointer(&sp.mem[off]))
				size, vlen, klen, kind := uint64(p.size), uint64(p.vlen), uint64(p.klen), p.kind
				k := off + recHeader
				v := k + klen
				if end := v + vlen; end > sh.heapOff+sp.region || size < end-off || off+size > sh.heapOff+sp.region ||
					p.hash != h || p.cache != id || klen != uint64(len(key)) || string(sp.mem[k:v]) != key {
					order.LoadFence() // arm64: the header and key loads before the re-read (doc.go, fence 1)
					if b.seq.Load() != s1 {
						continue outer
					}
					continue
				}
				exp, life := p.exp, int64(p.life)
				if kind == kindItem || kind == kindFailed {
					dst = append(dst, sp.mem[v:v+vlen]...)
				}
				order.LoadFence()       // arm64: the copy's loads before the re-read (doc.go, fence 1)
				if b.seq.Load() != s1 { // the copy may be torn
					dst = dst[:n]
					continue outer
				}
				switch kind {
				case kindItem:
					if exp != 0 {
						now := time.Now().UnixNano()
						switch {
						case exp <= now && now-exp < stale:
							touch(&b.slots[i], w)
							return dst, resStale, off
						case exp <= now:
							return dst[:n], resExpired, off
						case exp-now <= life*ahead:
							touch(&b.slots[i], w)
							return dst, resAhead, off
						}
					}
					touch(&b.slots[i], w)
					return dst, resHit, off
				case kindNegative:
					if exp <= time.Now().UnixNano() {
						return dst[:n], resMiss, 0
					}
					touch(&b.slots[i], w)
					return dst, resNegative, off
				case kindLoading:
					return dst, resLoading, off
				case kindFailed:
					if exp != 0 && exp <= time.Now().UnixNano() {
						return dst[:n], resMiss, 0
					}
					return dst, resFailed, off
				}
				return dst[:n], resMiss, 0
			}
			overflow := b.flags.Load()&bucketOverflow != 0
			if b.seq.Load() != s1 {
				continue outer
			}
			if !overflow {
				return dst, resMiss, 0
			}
			bi = (bi + 1) & sp.bmsk
		}
		return dst, resMiss, 0
	}
	return dst[:n], resUnstable, 0
}

// lock takes sh's lock; a lock taken over from a dead writer is repaired
// before lock returns.
func (sp *Space) lock(ctx context.Context, sh *shard) error {
	recovered, err := sh.h.lock.Lock(ctx, sp.p)
	if err != nil {
		return fmt.Errorf("cache: shard lock: %w", err)
	}
	if recovered {
		sp.repair(sh)
	}
	return nil
}

func (sp *Space) unlock(sh *shard) { sh.h.lock.Unlock(sp.p) }

// slotRef names one slot of the index.
type slotRef struct {
	b *bucket
	i int
}

func (s slotRef) valid() bool { return s.b != nil }
func (s slotRef) off() uint64 { return s.b.slots[s.i].Load() & offMask }

// publish stores w in the slot inside the bucket's seqlock. In the terminology
// of the Go memory model, the final (even) store synchronizes before any
// reader that loads it and then observes w.
func (s slotRef) publish(w uint64) {
	s.b.seq.Add(1) // odd: readers of this bucket retry
	s.b.slots[s.i].Store(w)
	s.b.seq.Add(1) // even: release
}

// touch raises the access count in slot word p, read as w, for a hit (doc.go
// # Eviction): one CAS of the word read, only below freqMax, so a hot
// record's line is not written on its hits; a CAS that fails (the slot
// changed) counts nothing.
func touch(p *atomic.Uint64, w uint64) {
	if w&freqMask != freqMax {
		p.CompareAndSwap(w, w+1)
	}
}

// touch is a hit's access count under the lock (readLocked).
func (s slotRef) touch() { touch(&s.b.slots[s.i], s.b.slots[s.i].Load()) }

// find returns the slot of key under the lock (the zero slotRef if none).
func (sp *Space) find(sh *shard, h uint64, id uint32, key string) slotRef {
	tag := h >> 48
	bi := sp.home(h)
	for range maxProbe {
		b := &sh.b[bi]
		for i := range slotsPerBucket {
			w := b.slots[i].Load()
			if w == 0 || w>>48 != tag {
				continue
			}
			off, r := sp.slotRec(sh, b, i)
			if r != nil && r.hash == h && r.cache == id && int(r.klen) == len(key) && string(sp.recKey(off, r)) == key {
				return slotRef{b, i}
			}
		}
		if b.flags.Load()&bucketOverflow == 0 {
			break
		}
		bi = (bi + 1) & sp.bmsk
	}
	return slotRef{}
}

// findOff returns the slot pointing at the record at off (hash h), if any:
// the record is live exactly when it has one.
func (sp *Space) findOff(sh *shard, h, off uint64) slotRef {
	w := h>>48<<48 | off
	bi := sp.home(h)
	for range maxProbe {
		b := &sh.b[bi]
		for i := range slotsPerBucket {
			if b.slots[i].Load()&^freqMask == w {
				return slotRef{b, i}
			}
		}
		if b.flags.Load()&bucketOverflow == 0 {
			break
		}
		bi = (bi + 1) & sp.bmsk
	}
	return slotRef{}
}

// pastHorizon reports whether item r is to be dropped as expired at now:
// its deadline passed, and the stale window and fail-safe limit of its
// cache after it (regEntry.stale, failSafe) too. The sweeper, the tail and
// the lookups under the lock drop an expired item only then; until then
// Get with a loader may still return it.
func (sp *Space) pastHorizon(r *recHdr, now int64) bool {
	if r.exp == 0 || r.exp > now {
		return false
	}
	e := &sp.h.registry[r.cache%MaxCaches]
	return now-r.exp >= max(e.stale, e.failSafe)
}

// liveItems calls fn for every unexpired item sh's index points at. The
// caller holds sh's lock.
func (sp *Space) liveItems(sh *shard, now int64, fn func(off uint64, r *recHdr)) {
	sp.items(sh, func(r *recHdr) bool { return r.exp == 0 || r.exp > now }, fn)
}

// keptItems calls fn for every item sh's index points at that is not past
// its horizon: the unexpired ones and the expired ones its cache still
// keeps (StaleFor, FailSafeFor). The caller holds sh's lock.
func (sp *Space) keptItems(sh *shard, now int64, fn func(off uint64, r *recHdr)) {
	sp.items(sh, func(r *recHdr) bool { return !sp.pastHorizon(r, now) }, fn)
}

// items calls fn for every item sh's index points at that keep accepts.
// The caller holds sh's lock.
func (sp *Space) items(sh *shard, keep func(r *recHdr) bool, fn func(off uint64, r *recHdr)) {
	for bi := range sh.b {
		b := &sh.b[bi]
		for i := range slotsPerBucket {
			if off, r := sp.slotRec(sh, b, i); r != nil && r.kind == kindItem && keep(r) {
				fn(off, r)
			}
		}
	}
}

// insert puts w (a new key's record) into the first empty slot of its probe
// range, flagging full buckets it passes. With no empty slot it evicts the
// least used record of the range (the lowest access count) to make one,
// never a loading record (a waiter would run the loader again): a range
// whose 56 slots all hold loads in progress returns ErrTooManyLoads and
// changes nothing.
func (sp *Space) insert(sh *shard, h, w uint64) error {
	bi := sp.home(h)
	var victim slotRef
	var victimFreq uint64 = freqMax + 1
	for range maxProbe {
		b := &sh.b[bi]
		for i := range slotsPerBucket {
			_, r := sp.slotRec(sh, b, i)
			if r == nil { // empty, or cleared by slotRec: it held damage
				slotRef{b, i}.publish(w)
				return nil
			}
			if f := b.slots[i].Load() & freqMask; r.kind != kindLoading && f < victimFreq {
				victim, victimFreq = slotRef{b, i}, f
			}
		}
		// Flag before moving on: a reader that sees the key in a later bucket
		// must not stop here.
		b.flags.Or(bucketOverflow)
		bi = (bi + 1) & sp.bmsk
	}
	if !victim.valid() { // every slot of the range holds a load in progress
		return fmt.Errorf("%w: all %d slots of the key's probe range are loading", ErrTooManyLoads, maxProbe*slotsPerBucket)
	}
	sp.drop(sh, victim, opEvict)
	victim.publish(w)
	return nil
}

// drop removes the record of slot s from the index, counting it as op
// (delete, expiry or eviction) and telling watchers and the log writer. It
// returns the journal position past the change (0 if not journaled).
func (sp *Space) drop(sh *shard, s slotRef, op uint8) uint64 {
	off := s.off()
	r := sp.recAt(sh, off)
	s.publish(0)
	if r == nil { // damage (callers pass slots they checked: defence in depth)
		sh.h.repairs.Add(1)
		return 0
	}
	r.ref |= refDead
	sp.account(sh, r, -1)
	if r.kind != kindItem {
		if r.kind == kindLoading {
			sh.h.ev.Wake()
		}
		return 0
	}
	switch op {
	case opEvict:
		sh.pc[r.cache%MaxCaches].evictions.Add(1)
	case opExpire:
		sh.pc[r.cache%MaxCaches].expirations.Add(1)
	}
	return sp.journalChange(op, r.cache, sp.recKey(off, r), nil, 0)
}

// account adds (sign=+1) or removes (-1) a record from its cache's counters.
func (sp *Space) account(sh *shard, r *recHdr, sign int64) {
	if r.kind != kindItem {
		return
	}
	pc := &sh.pc[r.cache%MaxCaches]
	pc.entries.Add(sign)
	pc.bytes.Add(sign * int64(r.size))
}

// write appends a record to sh's log, reclaiming space first, and returns its
// offset. The record is not yet referenced by the index. It fails only with
// ErrTooManyLoads (see reserve), having changed nothing a reader can tell.
func (sp *Space) write(sh *shard, kind uint8, id uint32, h uint64, key string, val []byte, exp int64, owner uint32) (uint64, error) {
	return sp.writeRec(sh, sp.find(sh, h, id, key), kind, id, h, key, val, nil, exp, owner)
}

// writeRec is write with a trailer after the value (a tagged item's tag
// list), inside the record's size and outside its vlen; prior is the key's
// slot before the write (find's, the zero slotRef if none). The record goes
// to a log as S3-FIFO places it (doc.go # Eviction): see place.
func (sp *Space) writeRec(sh *shard, prior slotRef, kind uint8, id uint32, h uint64, key string, val, trailer []byte, exp int64, owner uint32) (uint64, error) {
	size := recSize(len(key), len(val)+len(trailer))
	lg := sp.place(sh, prior, kind, h, size)
	off, err := sp.reserve(sh, lg, size)
	if err != nil {
		return 0, err
	}
	var life uint32
	if kind == kindItem && exp != 0 {
		life = lifeOf(exp - time.Now().UnixNano())
	}
	r := sp.rec(off)
	*r = recHdr{size: uint32(size), vlen: uint32(len(val)), klen: uint16(len(key)), kind: kind,
		cache: id, owner: owner, life: life, hash: h, exp: exp}
	copy(sp.mem[off+recHeader:], key)
	copy(sp.mem[off+recHeader+uint64(len(key)):], val)
	copy(sp.mem[off+recHeader+uint64(len(key))+uint64(len(val)):], trailer)
	lg.head.Add(size) // the record is complete before head passes it
	return off, nil
}

// place returns the log a new record of size bytes (hash h, the key's slot
// prior) goes to: a loading or failed record, or one larger than
// sp.smallMax, to the main log; an item or a negative record that replaces
// a live record of its key (an overwrite) to the main log too: an
// overwrite is an access, and S3-FIFO sends a small-queue object that was
// accessed to the main queue (where the paper moves it at the small tail,
// we write the new version there at once: writing it into the small log
// made a key rewritten in FIFO order reach the small tail just as it was
// overwritten, so that every Set also copied its dying old version to the
// main log, 350 instead of 250 ns a Set); else to the main log if the ghost
// table knows its hash (evicted from the small log not long ago: forgetting
// it there), else to the small log.
func (sp *Space) place(sh *shard, prior slotRef, kind uint8, h uint64, size uint64) logq {
	if !smallKind(kind) || size > sp.smallMax || prior.valid() {
		return sp.mainLog(sh)
	}
	if sp.ghostTake(sh, h) {
		sh.h.ghostHit.Add(1)
		return sp.mainLog(sh)
	}
	return sp.smallLog(sh)
}

// lifeOf returns a recHdr.life for an item with d nanoseconds to live:
// milliseconds, at least 1, saturating at 2^32-1.
func lifeOf(d int64) uint32 {
	return uint32(min(max(d/int64(time.Millisecond), 1), 1<<32-1))
}

// reserve makes room for size bytes at the head of lg (writing a filler
// record over the log's unused end at a wrap) and returns the arena offset
// to write at. It reclaims the oldest records of lg until the record fits
// (doc.go # Eviction): a record no slot points to is garbage; a small-log
// record read while there (access count > 0) is copied to the main log's
// head (promote), any other is evicted and its hash goes to the ghost table;
// a main-log item with a count > 0 is copied to the main head with the count
// one lower (a second chance, at most 16 per call), any other is evicted.
//
// A live loading record at the main tail is never evicted (a waiter would
// find the key absent and run the loader a second time): it is moved to the
// head (moveLoading). Only when the main log holds little but loads in
// progress, so that the tail has carried them round the log four times
// (every other record is gone by then: second chances are bounded) without
// making room, does reserve give up with ErrTooManyLoads. What it evicted
// on the way stays evicted; the index stays consistent. The small log holds
// no loading records (smallKind), so its reserve always succeeds.
func (sp *Space) reserve(sh *shard, lg logq, size uint64) (uint64, error) {
	moves := 0
	var loadMoved uint64 // bytes of loading records this call moved to the head
	var slack uint64 = moveSlack
	if lg.small {
		slack = 0 // no loading record is ever moved in the small log
	}
	for {
		// arm64: what earlier iterations unlinked (drop's and publish's
		// sequence increments) is visible before any plain store into the
		// space they freed: this iteration's filler, copy or the caller's
		// record (doc.go, fence 3; pairs with the hit path's LoadFence).
		order.StoreFence()
		head, tail := lg.head.Load(), lg.tail.Load()
		if !positionsOK(lg, head, tail) {
			sp.reset(sh) // only corruption gets here
			continue
		}
		free := lg.size - (head - tail)
		phys := head % lg.size
		toEnd := lg.size - phys
		if lg.fits(size, slack) {
			if toEnd < size {
				sp.fill(lg, phys, toEnd)
				phys = 0
			}
			return lg.base + phys, nil
		}
		// Reclaim the oldest record.
		tphys := tail % lg.size
		if lg.size-tphys < recHeader { // an implicit filler: too short for a header
			lg.tail.Add(lg.size - tphys)
			continue
		}
		toff := lg.base + tphys
		r := sp.rec(toff)
		if !sp.tailOK(sh, lg, toff, head-tail, r) { // only corruption gets here
			sp.reset(sh)
			continue
		}
		if r.kind == kindFiller || r.ref&refDead != 0 {
			lg.tail.Add(uint64(r.size))
			continue
		}
		s := sp.findOff(sh, r.hash, toff)
		var w uint64
		if s.valid() {
			w = s.b.slots[s.i].Load()
		}
		switch {
		case !s.valid(): // garbage: an old version, a deleted record, a crash's leftover
		case lg.small:
			// Read while in the small log, or room in the main log without
			// evicting there (a cache that is not full evicts nothing).
			if !sp.expired(r) && (w&freqMask > 0 || sp.roomWithoutEvicting(sh, sp.mainLog(sh), uint64(r.size))) {
				if sp.promote(sh, s, w, toff, uint64(r.size)) {
					break
				}
				if s.b.slots[s.i].Load()&^freqMask != w&^freqMask { // the main log's reserve reset the shard
					continue
				}
			}
			sp.evict(sh, s, r)
			sp.ghostAdd(sh, r.hash)
		case r.kind == kindLoading:
			if loadMoved > 4*lg.size {
				return 0, fmt.Errorf("%w: a record of %d bytes finds no room among them (heap %d)", ErrTooManyLoads, size, lg.size)
			}
			loadMoved += uint64(r.size)
			sp.moveLoading(sh, s, toff, uint64(r.size), free, phys, toEnd)
			continue // moveLoading moved the tail
		case r.kind == kindItem && w&freqMask > 0 && moves < 16 && free >= moveNeed(uint64(r.size), toEnd):
			// Second chance: copy the record to the head and point the slot
			// at it, its access count one lower.
			moves++
			sh.h.moved.Add(1)
			n := uint64(r.size)
			nphys := phys
			if toEnd < n {
				sp.fill(lg, phys, toEnd)
				nphys = 0
			}
			noff := lg.base + nphys
			copy(sp.mem[noff:noff+n], sp.mem[toff:toff+n])
			sp.rec(noff).ref = 0
			lg.head.Add(n)
			s.publish(w&^(offMask|freqMask) | noff | (w&freqMask - 1))
		default:
			sp.evict(sh, s, r)
		}
		lg.tail.Add(uint64(r.size))
	}
}

// roomWithoutEvicting reports whether a record of size bytes fits at lg's
// head (leaving moveSlack) once the garbage at its tail is reclaimed:
// fillers, records marked dead and records no slot points to, up to the
// first live record. It evicts nothing; what it reclaims was free space.
func (sp *Space) roomWithoutEvicting(sh *shard, lg logq, size uint64) bool {
	for !lg.fits(size, moveSlack) {
		head, tail := lg.head.Load(), lg.tail.Load()
		if !positionsOK(lg, head, tail) || head == tail {
			return false // reserve resets a damaged log
		}
		tphys := tail % lg.size
		if lg.size-tphys < recHeader { // an implicit filler
			lg.tail.Add(lg.size - tphys)
			continue
		}
		toff := lg.base + tphys
		r := sp.rec(toff)
		if !sp.tailOK(sh, lg, toff, head-tail, r) {
			return false
		}
		if r.kind != kindFiller && r.ref&refDead == 0 && sp.findOff(sh, r.hash, toff).valid() {
			return false // a live record: making room would evict it
		}
		lg.tail.Add(uint64(r.size))
	}
	return true
}

// expired reports whether r is an item past its horizon (pastHorizon: its
// deadline, and its cache's stale and fail-safe windows after it).
func (sp *Space) expired(r *recHdr) bool {
	return r.kind == kindItem && sp.pastHorizon(r, time.Now().UnixNano())
}

// evict drops the record r of slot s at a log's tail: an item past its
// horizon counts as an expiration, anything else as an eviction.
func (sp *Space) evict(sh *shard, s slotRef, r *recHdr) {
	if sp.expired(r) {
		sp.drop(sh, s, opExpire)
		return
	}
	sp.drop(sh, s, opEvict)
}

// promote copies the small log's tail record (toff, n bytes, slot s holding
// w) to the main log's head, making room there first (which may evict or
// move main records), and points the slot at the copy with a count of 0:
// S3-FIFO's move from the small queue to the main one. The copy is complete
// before the main head passes it and the slot changes after, inside its
// bucket's seqlock, so a process killed at any step leaves the slot on a
// complete record (the original stays in the live small log until the
// caller moves the small tail past it). It returns false, having changed
// no slot, when the main log finds no room (ErrTooManyLoads) or its reserve
// reset the shard (corruption).
func (sp *Space) promote(sh *shard, s slotRef, w, toff, n uint64) bool {
	noff, err := sp.reserve(sh, sp.mainLog(sh), n)
	if err != nil || s.b.slots[s.i].Load()&^freqMask != w&^freqMask {
		return false
	}
	copy(sp.mem[noff:noff+n], sp.mem[toff:toff+n])
	sh.h.head.Add(n)
	s.publish(w&^(offMask|freqMask) | noff)
	sh.h.promoted.Add(1)
	return true
}

// ghostLine returns the ghost table's line for hash h.
func (sp *Space) ghostLine(sh *shard, h uint64) []atomic.Uint64 {
	lines := uint64(len(sh.ghost) / ghostWays) // a power of two: buckets/ghostWays, or 1
	i := ((h >> 8) & (lines - 1)) * ghostWays
	return sh.ghost[i : i+ghostWays : i+ghostWays]
}

// ghostFP is a ghost entry's fingerprint of hash h (the high word; never 0).
func ghostFP(h uint64) uint64 { return (h>>32 | 1) << 32 }

// ghostAge is the ghost table's clock: the main log's head in records of
// recAlign bytes (modulo 2^32).
func (sp *Space) ghostAge(sh *shard) uint32 { return uint32(sh.h.head.Load() / recAlign) }

// ghostWindow is how far (in recAlign units of main-log writes) a ghost
// entry is remembered: the main log's size, about as many records as it
// holds (S3-FIFO's ghost queue is as long as the main queue).
func (sp *Space) ghostWindow() uint32 { return uint32(sp.heap / recAlign) }

// ghostAdd remembers hash h, evicted from the small log, in its line: over
// an empty entry or h's own, else over the oldest. The caller holds the
// shard lock.
func (sp *Space) ghostAdd(sh *shard, h uint64) {
	line := sp.ghostLine(sh, h)
	now, fp := sp.ghostAge(sh), ghostFP(h)
	best, oldest := 0, uint32(0)
	for i := range line {
		e := line[i].Load()
		if e == 0 || e&^(1<<32-1) == fp {
			best = i
			break
		}
		if age := now - uint32(e); age >= oldest {
			best, oldest = i, age
		}
	}
	line[best].Store(fp | uint64(now))
}

// ghostTake reports whether hash h was evicted from the small log within
// the ghost window, forgetting it. The caller holds the shard lock.
func (sp *Space) ghostTake(sh *shard, h uint64) bool {
	line := sp.ghostLine(sh, h)
	fp := ghostFP(h)
	for i := range line {
		if e := line[i].Load(); e&^(1<<32-1) == fp {
			line[i].Store(0)
			return sp.ghostAge(sh)-uint32(e) <= sp.ghostWindow()
		}
	}
	return false
}

// moveLoading moves the live loading record of n bytes at the tail (toff,
// slot s) to the head, whose physical position is phys, toEnd bytes before
// the heap's end, with free bytes free. A loading record is small (a header
// and a key: at most recSize(MaxKeyLen, 0) bytes).
//
// With room for the copy at the head (free >= moveNeed), it is copied there,
// head passes it, the slot is pointed at it (inside the bucket's seqlock),
// and only then does tail pass the original: a process killed at any step
// leaves the slot pointing at a complete record inside the live log.
//
// Otherwise (rare: reserve keeps moveSlack free, but a filler at a wrap can
// eat into it) the copy's place overlaps the original, so the record goes through
// a copy in Go memory with its bucket's sequence odd the whole time: tail
// passes the original, the copy is written at the head (after a filler at a
// wrap), head passes it, the slot is stored, the sequence made even. There
// is always room once tail has passed the original: records never cross the
// heap's end, so if toEnd < n the tail lies in the wrapped part and free >=
// toEnd, hence free+n >= moveNeed(n, toEnd). Lock-free readers of the
// bucket retry until the sequence is even. A process killed inside this
// window leaves an odd sequence and a slot pointing outside the live log:
// repair drops the slot, and a waiter then takes the load over (a second
// load after a crash inside the shard lock, the one case where the loader
// can run twice for one miss while its first runner lives).
func (sp *Space) moveLoading(sh *shard, s slotRef, toff, n, free, phys, toEnd uint64) {
	r := sp.rec(toff)
	tag := r.hash >> 48 << 48
	if free >= moveNeed(n, toEnd) {
		if toEnd < n {
			sp.fill(sp.mainLog(sh), phys, toEnd)
			phys = 0
		}
		noff := sh.heapOff + phys
		copy(sp.mem[noff:noff+n], sp.mem[toff:toff+n])
		sh.h.head.Add(n)
		s.publish(tag | noff)
		sh.h.tail.Add(n)
		return
	}
	var tmp [recHeader + MaxKeyLen + recAlign]byte
	copy(tmp[:n], sp.mem[toff:toff+n])
	s.b.seq.Add(1) // odd: readers of the bucket retry while its record moves
	sh.h.tail.Add(n)
	order.StoreFence() // arm64: the odd sequence before the copy's plain stores (doc.go, fence 2)
	head := sh.h.head.Load()
	phys = head % sp.heap
	if toEnd = sp.heap - phys; toEnd < n {
		sp.fill(sp.mainLog(sh), phys, toEnd)
		phys = 0
	}
	noff := sh.heapOff + phys
	copy(sp.mem[noff:noff+n], tmp[:n])
	sh.h.head.Add(n)
	s.b.slots[s.i].Store(tag | noff)
	s.b.seq.Add(1) // even: release
}

// moveSlack is the free space reserve leaves at the head besides the record
// it makes room for: room to move the largest loading record, even at a
// wrap, without the copy overlapping the original (moveLoading's crash-safe
// path). Only fillers eating into it leave a move the overlapping path.
const moveSlack = 2 * ((recHeader + MaxKeyLen + recAlign - 1) &^ (recAlign - 1))

// moveNeed is the log space a record of n bytes takes at a head toEnd bytes
// before the heap's end.
func moveNeed(n, toEnd uint64) uint64 {
	if toEnd < n {
		return toEnd + n
	}
	return n
}

// fill turns the toEnd bytes of lg from phys to its end into a filler and
// moves lg's head past them. Fewer than recHeader bytes are an implicit
// filler: no header fits there, and every reader of the log skips them.
func (sp *Space) fill(lg logq, phys, toEnd uint64) {
	if toEnd >= recHeader {
		*sp.rec(lg.base + phys) = recHdr{size: uint32(toEnd), kind: kindFiller}
	}
	lg.head.Add(toEnd)
}

// reset empties a shard whose log positions are impossible (memory
// corruption, never a crash): every slot is cleared and counted as evicted.
func (sp *Space) reset(sh *shard) {
	for bi := range sh.b {
		b := &sh.b[bi]
		b.seq.Add(1)
		for i := range slotsPerBucket {
			b.slots[i].Store(0)
		}
		b.flags.Store(0)
		b.seq.Add(1)
	}
	for i := range sh.pc {
		sh.pc[i].entries.Store(0)
		sh.pc[i].bytes.Store(0)
	}
	// Both positions of each log on one record boundary (a damaged head may
	// be off one): the log is empty and the next record goes where they point.
	for _, lg := range sp.logs(sh) {
		pos := lg.head.Load() &^ (recAlign - 1)
		lg.head.Store(pos)
		lg.tail.Store(pos)
	}
	sh.h.repairs.Add(1)
	sp.journalRepaired() // every entry of the shard went without a journal record
}

// logs returns sh's two logs, main first.
func (sp *Space) logs(sh *shard) [2]logq { return [2]logq{sp.mainLog(sh), sp.smallLog(sh)} }

// repair undoes what a writer killed inside sh may have left: odd bucket
// sequences, slots pointing at records that are not where the logs say, and
// counters. Every step of a write leaves a state this detects. The ghost
// table and the slots' access counts need nothing: any value of them is a
// valid hint.
func (sp *Space) repair(sh *shard) {
	sh.h.repairs.Add(1)
	// The dead writer may have changed a slot and died before it journalled
	// the change: say so before any new change of the shard (we hold its
	// lock), so that watchers hear OpLost and the log writer snapshots.
	sp.journalRepaired()
	live := sp.logRecords(sh)
	if live == nil {
		return // logRecords reset the shard
	}
	for i := range sh.pc {
		sh.pc[i].entries.Store(0)
		sh.pc[i].bytes.Store(0)
	}
	for bi := range sh.b {
		b := &sh.b[bi]
		if b.seq.Load()&1 != 0 {
			b.seq.Add(1)
		}
		for i := range slotsPerBucket {
			w := b.slots[i].Load()
			if w == 0 {
				continue
			}
			off := w & offMask
			if _, ok := live[off]; !ok { // outside the live logs (or the heap: damage)
				slotRef{b, i}.publish(0)
				continue
			}
			r := sp.rec(off) // a record boundary of a live log that logRecords checked
			if w>>48 != r.hash>>48 || r.kind == kindFiller || r.ref&refDead != 0 || !sp.homeOK(uint64(bi), r.hash) {
				slotRef{b, i}.publish(0)
				continue
			}
			sp.account(sh, r, +1)
		}
	}
	sh.h.ev.Wake()
}

// homeOK reports whether bucket bi is within the probe range of hash h.
func (sp *Space) homeOK(bi, h uint64) bool {
	return (bi-sp.home(h))&sp.bmsk < maxProbe
}

// logRecords walks the live part of both of sh's logs and returns the
// offsets of their records (nil, after resetting the shard, if either's
// positions are impossible or it does not parse).
func (sp *Space) logRecords(sh *shard) map[uint64]struct{} {
	live := map[uint64]struct{}{}
	for _, lg := range sp.logs(sh) {
		if err := sp.walkLog(sh, lg, func(off uint64, r *recHdr) { live[off] = struct{}{} }); err != nil {
			sp.reset(sh)
			return nil
		}
	}
	return live
}

// walkLog calls fn for every record but fillers of lg's live part, oldest
// first. It stops at impossible positions or a record that fails tailOK and
// returns an error saying where. The caller holds sh's lock.
func (sp *Space) walkLog(sh *shard, lg logq, fn func(off uint64, r *recHdr)) error {
	head, tail := lg.head.Load(), lg.tail.Load()
	if !positionsOK(lg, head, tail) {
		return fmt.Errorf("log positions tail %d head %d (log of %d bytes, records on %d-byte boundaries)", tail, head, lg.size, recAlign)
	}
	for pos := tail; pos < head; {
		phys := pos % lg.size
		if lg.size-phys < recHeader {
			pos += lg.size - phys
			continue
		}
		off := lg.base + phys
		r := sp.rec(off)
		if !sp.tailOK(sh, lg, off, head-pos, r) {
			return fmt.Errorf("log does not parse at position %d (size %d kind %d)", pos, r.size, r.kind)
		}
		if r.kind != kindFiller {
			fn(off, r)
		}
		pos += uint64(r.size)
	}
	return nil
}
