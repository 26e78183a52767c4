package cache

import (
	"context"
	"errors"
	"fmt"
)

// Verify walks the whole space, shard by shard under each shard's lock, and
// returns an error wrapping ErrCorrupt that lists every inconsistency: log
// positions out of order, a log (main or small) that does not parse or a
// small log holding a record of a kind the writers never put there, odd
// bucket sequences,
// slots pointing outside the live log or at records of another hash, a key in
// two slots, a counter that is not 8 bytes, a tagged item without its tag
// list, a bucket outside its key's probe range, a load marker (a key's
// shadow: see shadowID) neither loading nor failed, counters that do not
// match the index. A shard taken over from a dead writer is repaired first
// (that is what a lock takeover does), so Verify checks what readers will see.
// It changes nothing else.
func (sp *Space) Verify(ctx context.Context) error {
	var errs []error
	bad := func(si int, format string, args ...any) {
		if len(errs) < 50 {
			errs = append(errs, fmt.Errorf("shard %d: "+format, append([]any{si}, args...)...))
		}
	}
	for si := range sp.sh {
		sh := &sp.sh[si]
		if err := sp.lock(ctx, sh); err != nil {
			return fmt.Errorf("cache: verify: %w", err)
		}
		func() {
			defer sp.unlock(sh)
			live := map[uint64]bool{}
			for _, lg := range sp.logs(sh) {
				if err := sp.walkLog(sh, lg, func(off uint64, _ *recHdr) { live[off] = true }); err != nil {
					bad(si, "%s log: %v", logName(lg), err)
					return
				}
			}
			type ck struct {
				id  uint32
				key string
			}
			seen := map[ck]bool{}
			var entries, bytes [MaxCaches]int64
			for bi := range sh.b {
				b := &sh.b[bi]
				if b.seq.Load()&1 != 0 {
					bad(si, "bucket %d has odd sequence %d", bi, b.seq.Load())
				}
				for i := range slotsPerBucket {
					w := b.slots[i].Load()
					if w == 0 {
						continue
					}
					off := w & offMask
					if !live[off] {
						bad(si, "bucket %d slot %d points at %d, not a live record", bi, i, off)
						continue
					}
					r := sp.rec(off)
					switch {
					case r.kind == kindFiller:
						bad(si, "bucket %d slot %d points at a filler", bi, i)
						continue
					case r.ref&refDead != 0:
						bad(si, "bucket %d slot %d points at a record marked dead", bi, i)
					case w>>48 != r.hash>>48:
						bad(si, "bucket %d slot %d tag %x does not match its record's hash %x", bi, i, w>>48, r.hash)
					case !sp.homeOK(uint64(bi), r.hash):
						bad(si, "bucket %d outside the probe range of its record's hash", bi)
					case r.hash != recHash(r.cache, string(sp.recKey(off, r))):
						bad(si, "record at %d: hash does not match its key", off)
					case r.hash&sp.smsk != uint64(si):
						bad(si, "record at %d belongs to shard %d", off, r.hash&sp.smsk)
					case r.kind == kindItem && r.owner&^(itemCounter|itemTagged) != 0:
						bad(si, "item at %d has unknown flags %#x", off, r.owner)
					case r.kind == kindItem && r.owner&itemCounter != 0 && r.vlen != 8:
						bad(si, "counter at %d holds %d bytes", off, r.vlen)
					case r.kind == kindItem && r.owner&itemTagged != 0 && sp.recTags(off, r) == nil:
						bad(si, "tagged item at %d has no tag list inside its record", off)
					case r.cache >= shadowID && r.kind != kindLoading && r.kind != kindFailed:
						bad(si, "record at %d: a load marker (cache %d) of kind %d", off, r.cache, r.kind)
					}
					k := ck{r.cache, string(sp.recKey(off, r))}
					if seen[k] {
						bad(si, "key %q of cache %d is in two slots", k.key, k.id)
					}
					seen[k] = true
					if r.kind == kindItem && r.cache < MaxCaches {
						entries[r.cache]++
						bytes[r.cache] += int64(r.size)
					}
				}
			}
			for id := range MaxCaches {
				if e, b := sh.pc[id].entries.Load(), sh.pc[id].bytes.Load(); e != entries[id] || b != bytes[id] {
					bad(si, "cache %d counts %d entries/%d bytes, the index holds %d/%d", id, e, b, entries[id], bytes[id])
				}
			}
		}()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrCorrupt, errors.Join(errs...))
	}
	return nil
}

// Repairs returns how many times a shard lock was taken over from a dead
// writer and the shard repaired, since the space was created.
func (sp *Space) Repairs() uint64 {
	var n uint64
	for i := range sp.sh {
		n += sp.sh[i].h.repairs.Load()
	}
	return n
}

// logName names lg in Verify's reports.
func logName(lg logq) string {
	if lg.small {
		return "small"
	}
	return "main"
}
