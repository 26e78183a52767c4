package cache

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/cluster2/cluster2/internal/order"
)

// Journal operations, as watchers see them.
const (
	opFiller = 0
	opSet    = 1
	opDel    = 2
	opExpire = 3
	opEvict  = 4
	opDefine = 5 // a persistent cache was created: key is its name, exp its Expire

	// opRepair: a shard was repaired (its lock taken over from a dead
	// writer, or reset after damage). The dead writer may have changed a
	// slot and died before journalling it (the write path's step 4, after
	// step 3's publication), and a reset drops entries unjournalled: changes
	// may be missing before this record. Watchers hear OpLost, and the log
	// writer treats it as a gap (a snapshot takes the shard as it is). No
	// key, cache 0.
	opRepair = 6
)

// journalRepaired appends an opRepair record (see there), called under the
// repaired shard's lock. An append that gives up counts a gap request, so
// the log writer snapshots all the same.
func (sp *Space) journalRepaired() {
	if !sp.journaling.Load() {
		return // a restore: what it applies is in the log already
	}
	if end := sp.journalAppend(opRepair, 0, nil, nil, 0); end == 0 || end == jendLost {
		if end == 0 {
			sp.jr.h.gapReq.Add(1)
			sp.jr.h.pev.Wake()
		}
	}
}

// journalLockWait bounds how long an append waits for the journal lock held
// by a live process (a variable for the tests).
var journalLockWait = 5 * time.Second

// journal is a process's view of the change journal.
type journal struct {
	h    *journalHdr
	data []byte
	cap  uint64
}

// jendLost is what journalChange returns when the change of a persistent
// cache could not be journaled: no journal position is that large.
const jendLost = ^uint64(0)

// journalChange appends a change of cache id to the journal if the cache
// persists or some process watches it, and returns the journal position past
// the record (0 if none was appended; jendLost if the cache persists and the
// append gave up: a gap request is counted, see doc.go). Called with the
// key's shard lock held, so that the journal's order is the key's mutation
// order (and a snapshot that counts the gap request sees the change).
func (sp *Space) journalChange(op uint8, id uint32, key, val []byte, exp int64) uint64 {
	return sp.journalChangeMeta(op, id, key, val, exp, 0, nil)
}

// journalChangeMeta is journalChange with record flags (jflagCounter,
// jflagTagged) and, for a tagged item, its tag list, which the record's
// value field carries before the value.
func (sp *Space) journalChangeMeta(op uint8, id uint32, key, val []byte, exp int64, flags uint8, tags []byte) uint64 {
	id %= MaxCaches
	if !sp.journaling.Load() || sp.h.registry[id].persist == 0 && sp.jr.h.watchers[id].Load() <= 0 {
		return 0
	}
	return sp.journalAppendMeta(op, id, key, val, exp, flags, tags)
}

// journalAppend appends one record (see journalChange) and wakes the
// watchers.
func (sp *Space) journalAppend(op uint8, id uint32, key, val []byte, exp int64) uint64 {
	return sp.journalAppendMeta(op, id, key, val, exp, 0, nil)
}

// journalAppendMeta is journalAppend with flags and a tag list (see
// journalChangeMeta).
func (sp *Space) journalAppendMeta(op uint8, id uint32, key, val []byte, exp int64, flags uint8, tags []byte) uint64 {
	j := &sp.jr
	if flags&jflagTagged == 0 {
		tags = nil
	}
	if uint64(len(tags)+len(val)) > sp.maxJournalValue() {
		// Only for watchers: Set refuses such values in persistent caches.
		flags, tags, val = flags&jflagCounter|jflagNoValue, nil, nil
	}
	size := uint64(jrecHeader+len(key)+len(tags)+len(val)+7) &^ 7
	ok, recovered := j.h.lock.TryLock(sp.p) // the common case: no context, no timer
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), journalLockWait)
		var err error
		recovered, err = j.h.lock.Lock(ctx, sp.p)
		cancel()
		if err != nil {
			// A live writer held the journal for 5 s: give up on this
			// change. The log writer snapshots to cover it (doc.go).
			sp.watchLost.Add(1)
			if sp.h.registry[id%MaxCaches].persist != 0 {
				j.h.gapReq.Add(1)
				j.h.pev.Wake()
				return jendLost
			}
			return 0
		}
	}
	// claim never goes down. After a lock recovery (recovered: a writer died
	// between claiming and publishing) it may lie past tail: what the dead
	// writer wrote up to it was never published, but it may have overwritten
	// bytes a lagging reader is copying, and that reader checks claim only
	// after its copy. Lowering claim to tail would make the reader accept a
	// half-overwritten record; so the dead claim stays until writes pass it
	// (readers between see a lap, which is only conservative).
	_ = recovered // nothing to repair: see above
	pos := j.h.tail.Load()
	phys := pos & (j.cap - 1)
	toEnd := j.cap - phys
	total := size
	if toEnd < size {
		total = toEnd + size
	}
	// A claim more than a capacity past tail is damage, not a dead writer's
	// (a record with its filler takes less than half the journal): such a
	// claim would make every reader see a lap for ever, so it is replaced by
	// this record's, which still covers every byte this record overwrites.
	if c, cl := pos+total, j.h.claim.Load(); c > cl || cl-pos > j.cap {
		j.h.claim.Store(c) // before any byte a reader may be copying is overwritten
	}
	order.StoreFence() // arm64: the claim before the record's plain stores (doc.go, fence 4)
	if toEnd < size {
		if toEnd >= jrecHeader {
			binary.LittleEndian.PutUint32(j.data[phys:], uint32(toEnd))
			j.data[phys+4] = opFiller
		}
		phys = 0
	}
	rec := j.data[phys : phys+size]
	binary.LittleEndian.PutUint32(rec[0:], uint32(size))
	rec[4], rec[5] = op, flags
	binary.LittleEndian.PutUint16(rec[6:], uint16(len(key)))
	binary.LittleEndian.PutUint32(rec[8:], id)
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(tags)+len(val)))
	binary.LittleEndian.PutUint64(rec[16:], uint64(exp))
	copy(rec[jrecHeader:], key)
	copy(rec[jrecHeader+len(key):], tags)
	copy(rec[jrecHeader+len(key)+len(tags):], val)
	end := pos + total
	j.h.tail.Store(end) // release: the record is complete
	j.h.lock.Unlock(sp.p)
	j.h.ev.Wake()
	// The log writer sleeps up to 10 ms between batches of Never and
	// EverySecond records: the append that fills the journal past a quarter
	// of what it has logged wakes it.
	if quarter := j.cap / 4; j.h.writer.Load() != 0 {
		if logged := j.h.logged.Load(); pos-logged <= quarter && end-logged > quarter {
			j.h.pev.Wake()
		}
	}
	return end
}

// maxJournalValue is the largest value a journal record carries.
func (sp *Space) maxJournalValue() uint64 { return sp.jr.cap/4 - jrecHeader - MaxKeyLen }

// change is one decoded journal record.
type change struct {
	op      uint8
	noValue bool
	id      uint32
	key     string
	val     []byte
	exp     int64
}

// decodeRecord decodes a journal record copied out of the journal.
func decodeRecord(buf []byte) (change, bool) {
	if len(buf) < jrecHeader {
		return change{}, false
	}
	klen := int(binary.LittleEndian.Uint16(buf[6:]))
	vlen := int(binary.LittleEndian.Uint32(buf[12:]))
	if jrecHeader+klen+vlen > len(buf) {
		return change{}, false
	}
	c := change{op: buf[4], noValue: buf[5]&jflagNoValue != 0, id: binary.LittleEndian.Uint32(buf[8:]) % MaxCaches,
		key: string(buf[jrecHeader : jrecHeader+klen]), exp: int64(binary.LittleEndian.Uint64(buf[16:]))}
	if c.op == opSet {
		v := buf[jrecHeader+klen : jrecHeader+klen+vlen]
		if buf[5]&jflagTagged != 0 {
			n, ok := tagListLen(v)
			if !ok {
				return change{}, false
			}
			v = v[n:]
		}
		c.val = append([]byte(nil), v...)
	}
	return c, true
}

// tailJournal follows the journal from position cur and dispatches every
// change to this process's watchers, in journal order, until stop.
func (sp *Space) tailJournal(cur uint64, stop <-chan struct{}) {
	j := &sp.jr
	buf := make([]byte, 0, 1024)
	for {
		select {
		case <-stop:
			return
		default:
		}
		t := j.h.tail.Load()
		if cur == t {
			tk := j.h.ev.Prepare()
			if j.h.tail.Load() != cur {
				j.h.ev.Cancel()
				continue
			}
			j.h.ev.Sleep(tk, 100*time.Millisecond)
			continue
		}
		if t-cur > j.cap || t < cur {
			sp.watchLost.Add(1)
			sp.lapped()
			cur = t
			continue
		}
		phys := cur & (j.cap - 1)
		if j.cap-phys < jrecHeader {
			cur += j.cap - phys
			continue
		}
		size := uint64(binary.LittleEndian.Uint32(j.data[phys:]))
		if size < jrecHeader || size%8 != 0 || phys+size > j.cap || cur+size > t {
			// Either lapped while reading the size, or a record we cannot
			// parse: resynchronise at the tail and count the loss.
			sp.watchLost.Add(1)
			sp.lapped()
			cur = j.h.tail.Load()
			continue
		}
		buf = append(buf[:0], j.data[phys:phys+size]...)
		order.LoadFence()                 // arm64: the copy before the claim check (doc.go, fence 5)
		if j.h.claim.Load() > cur+j.cap { // overwritten while we copied
			sp.watchLost.Add(1)
			sp.lapped()
			cur = j.h.tail.Load()
			continue
		}
		cur += size
		if buf[4] == opFiller {
			continue
		}
		c, ok := decodeRecord(buf)
		if !ok {
			sp.watchLost.Add(1)
			sp.lapped()
			continue
		}
		switch {
		case c.op <= opEvict:
			sp.dispatch(c)
		case c.op == opRepair: // changes may be missing before it: every watcher hears OpLost
			sp.watchLost.Add(1)
			sp.lapped()
		}
	}
}
