package cache

// Tags and Clear.
//
// # Design
//
// A Set (SetOptions.Tags) may give an entry up to MaxTags tags of 1 to
// MaxTagLen bytes. The tags live in the entry's own record, as a tag list
// after the value (the itemTagged flag in the record's owner word says it is
// there; size covers it, vlen does not, so the lock-free hit path, which
// copies vlen bytes, neither reads nor pays for it):
//
//	tag list: count u8 │ { len u8 │ tag bytes }×count
//
// InvalidateTag and Clear are eager: they walk the cache's shards (those
// whose per-cache entry count is not zero), under each shard's lock for at
// most clearBatch buckets at a time, and drop every matching item the way
// Del does (publish(0) inside the bucket's seqlock, the record marked dead,
// the counters updated, one opDel journal record). So:
//
//   - readers stay lock-free and the hit path is unchanged: a dropped entry
//     is a miss from the moment its slot is cleared, in every process;
//   - watchers hear each removal as an OpDel of its key, as for Del (no
//     lazy removal, so nothing to tell later); a walk that removes more than
//     the journal holds laps slow watchers, who hear OpLost;
//   - a persistent cache logs each removal as the log's OpDel, and the tag
//     lists themselves with the value (the log's OpSetMeta: the tag list,
//     then the value), so a replay restores the tags and replays the
//     removals; nothing new to snapshot but the tags of live entries;
//   - a process killed during a walk leaves each shard as after a Del
//     interrupted at the same step (the shard lock's repair covers it):
//     the entries it dropped are gone and journalled, the others are still
//     there; the call never returned, so nothing was acknowledged.
//   - memory order: nothing beyond Del's (publish's seqlock release).
//
// An entry set while a walk runs may be left (it came after the walk passed
// its bucket) or removed: InvalidateTag and Clear remove every entry set
// before they were called. The cost is a walk of the cache's shards' index
// (one load per slot, a record header for each slot of the cache: a cache
// miss per entry), not of the entries of the tag: the alternative, a per-tag generation in the arena
// that entries carry, would make invalidation O(1) but needs a generation
// check on every hit and tells watchers nothing until a lazy removal; the
// eager walk keeps both exact. docs/cache.md (Tags and Clear) has its cost.

import (
	"context"
	"fmt"
	"time"
)

// clearBatch is the number of buckets a tag walk or Clear handles per
// shard lock hold: writers of the shard wait for one batch at most (1024
// buckets held the lock ~650 µs in a 100,000-entry cache on a loaded 2-vCPU
// VM; 128 make it under 100 µs there).
const clearBatch = 128

// encodeTags returns the tag list of tags (nil for none), duplicates
// dropped, or an error wrapping ErrBadTag or ErrTooManyTags.
func encodeTags(tags []string) ([]byte, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	out := []byte{0}
	n := 0
next:
	for i, t := range tags {
		if len(t) == 0 || len(t) > MaxTagLen {
			return nil, fmt.Errorf("tag %q: %w (1 to %d bytes)", t, ErrBadTag, MaxTagLen)
		}
		for _, u := range tags[:i] {
			if u == t {
				continue next
			}
		}
		if n++; n > MaxTags {
			return nil, fmt.Errorf("%d tags: %w (limit %d)", len(tags), ErrTooManyTags, MaxTags)
		}
		out = append(out, byte(len(t)))
		out = append(out, t...)
	}
	out[0] = byte(n)
	return out, nil
}

// tagListLen returns the length of the tag list at the start of b, or false
// when b does not start with one that a writer writes.
func tagListLen(b []byte) (int, bool) {
	if len(b) == 0 || b[0] == 0 || b[0] > MaxTags {
		return 0, false
	}
	p := 1
	for range int(b[0]) {
		if p >= len(b) {
			return 0, false
		}
		l := int(b[p])
		if l == 0 || l > MaxTagLen || p+1+l > len(b) {
			return 0, false
		}
		p += 1 + l
	}
	return p, true
}

// decodeTags returns the tags of a tag list (nil if it does not parse).
func decodeTags(b []byte) []string {
	n, ok := tagListLen(b)
	if !ok {
		return nil
	}
	var out []string
	for p := 1; p < n; p += 1 + int(b[p]) {
		out = append(out, string(b[p+1:p+1+int(b[p])]))
	}
	return out
}

// tagListHas reports whether the tag list at the start of b holds tag.
func tagListHas(b []byte, tag string) bool {
	n, ok := tagListLen(b)
	if !ok {
		return false
	}
	for p := 1; p < n; p += 1 + int(b[p]) {
		if string(b[p+1:p+1+int(b[p])]) == tag {
			return true
		}
	}
	return false
}

// recTags returns the tag list of item r at off (nil if untagged), a view
// of the arena valid under the shard lock. A list that does not fit the
// record (damage) reads as none.
func (sp *Space) recTags(off uint64, r *recHdr) []byte {
	if r.kind != kindItem || r.owner&itemTagged == 0 {
		return nil
	}
	start := off + recHeader + uint64(r.klen) + uint64(r.vlen)
	end := off + uint64(r.size)
	b := sp.mem[start:end:end]
	n, ok := tagListLen(b)
	if !ok {
		return nil
	}
	return b[:n:n]
}

// InvalidateTag removes every entry of the cache that carries tag, in every
// process, and returns how many it removed. Watchers hear an OpDel for each.
// An entry set while it runs may stay (see the design in tags.go). In a
// persistent cache the removals are logged (errors as for Del:
// ErrPersistFailing, ErrNotDurable). A tag that is empty or longer than
// MaxTagLen returns ErrBadTag. In a distributed cache the tag's keys are
// deleted in the second tier first (every host drops them when its
// invalidations arrive; this one at once); an error there removes nothing.
func (c *Cache) InvalidateTag(ctx context.Context, tag string) (int, error) {
	if c.isClosed() {
		return 0, fmt.Errorf("cache %q: %w", c.name, ErrClosed)
	}
	if len(tag) == 0 || len(tag) > MaxTagLen {
		return 0, fmt.Errorf("cache %q: invalidate tag %q: %w (1 to %d bytes)", c.name, tag, ErrBadTag, MaxTagLen)
	}
	if r := c.remote(); r != nil {
		keys, err := r.InvalidateTag(ctx, c.name, tag)
		if goOn, err := c.remoteWrite(r, "invalidate tag", tag, err); !goOn {
			return 0, err
		}
		for _, k := range keys { // loaded from the tier, they carry no tags here
			c.invalidate(ctx, k, false)
		}
	}
	c.sp.h.ops[c.id].tagInvals.Add(1)
	n, err := c.removeWhere(ctx, func(off uint64, r *recHdr) bool { return tagListHas(c.sp.recTags(off, r), tag) })
	if err != nil {
		return n, fmt.Errorf("cache %q: invalidate tag %q: %w", c.name, tag, err)
	}
	return n, nil
}

// Clear removes every entry of the cache, in every process, and returns how
// many it removed. Watchers hear an OpDel for each; a load in progress is
// left to its loader (its value arrives after the Clear). An entry set while
// it runs may stay. In a persistent cache the removals are logged (errors as
// for Del). In a distributed cache the second tier is cleared first (an
// error there removes nothing), then this host's entries and loads in
// progress (InvalidateAll); the other hosts drop theirs key by key as their
// invalidations arrive.
func (c *Cache) Clear(ctx context.Context) (int, error) {
	if c.isClosed() {
		return 0, fmt.Errorf("cache %q: %w", c.name, ErrClosed)
	}
	if r := c.remote(); r != nil {
		if goOn, err := c.remoteWrite(r, "clear", "", r.Clear(ctx, c.name)); !goOn {
			return 0, err
		}
		if err := c.InvalidateAll(ctx); err != nil { // loads in progress too
			return 0, fmt.Errorf("cache %q: clear: %w", c.name, err)
		}
	}
	c.sp.h.ops[c.id].clears.Add(1)
	n, err := c.removeWhere(ctx, func(uint64, *recHdr) bool { return true })
	if err != nil {
		return n, fmt.Errorf("cache %q: clear: %w", c.name, err)
	}
	return n, nil
}

// removeWhere drops every item of c for which match holds (called under the
// shard lock with a record recAt checked), walking each shard that holds
// entries of c clearBatch buckets per lock hold. It returns how many live
// items it dropped (expired ones it meets are dropped as expiries, failed
// records silently; loading records are left).
func (c *Cache) removeWhere(ctx context.Context, match func(off uint64, r *recHdr) bool) (int, error) {
	sp := c.sp
	if c.opts.Persist {
		if err := c.refuseIfFailing(); err != nil {
			return 0, err
		}
	}
	removed := 0
	var jend uint64
	for si := range sp.sh {
		sh := &sp.sh[si]
		for from := 0; from < len(sh.b); from += clearBatch {
			if sh.pc[c.id].entries.Load() == 0 {
				break
			}
			if c.opts.Persist {
				c.throttle(ctx)
			}
			if err := sp.lock(ctx, sh); err != nil {
				return removed, err
			}
			now := time.Now().UnixNano()
			for bi := from; bi < min(from+clearBatch, len(sh.b)); bi++ {
				b := &sh.b[bi]
				for i := range slotsPerBucket {
					off, r := sp.slotRec(sh, b, i)
					if r == nil || r.cache != c.id || r.kind == kindLoading {
						continue
					}
					s := slotRef{b, i}
					switch {
					case r.kind != kindItem:
						sp.drop(sh, s, opDel)
					case r.exp != 0 && r.exp <= now:
						sp.drop(sh, s, opExpire)
					case match(off, r):
						jend = max(jend, sp.drop(sh, s, opDel))
						removed++
					}
				}
			}
			sp.unlock(sh)
		}
	}
	return removed, c.awaitDurable(ctx, jend)
}
