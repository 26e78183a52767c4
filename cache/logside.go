package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/persist"
)

// Journal returns the log side of the space, behind one door: everything
// the log writer (package persist's LogWriter) needs of it, namely attaching
// as the space's log writer, reading the journal's records of persistent
// caches, publishing the logged, durable and failing marks, restoring a log
// into the space, scanning it for a snapshot, and the log writer's figures
// (Stats, which /status shows). A program that only uses caches never calls
// it. The value is safe for concurrent use and across processes; the Cursor
// its Attach returns is one process's.
func (sp *Space) Journal() persist.Journal { return logSide{sp} }

// logSide is the space's persist.Journal.
type logSide struct{ sp *Space }

var _ persist.Journal = logSide{}

// Attach makes this process the space's log writer (see persist.Journal).
func (l logSide) Attach(def persist.Durability) (persist.Cursor, error) {
	sp := l.sp
	j := sp.jr.h
	me := sp.p.Token()
	for {
		cur := j.writer.Load()
		if cur != 0 && cur != me && sp.a.Alive(cur) {
			return nil, persist.ErrWriterBusy
		}
		if j.writer.CompareAndSwap(cur, me) {
			break
		}
	}
	j.defDur.Store(uint32(def))
	return &cursor{sp: sp, cur: j.logged.Load()}, nil
}

// Attached reports whether a live process is the space's log writer.
func (l logSide) Attached() bool {
	o := l.sp.jr.h.writer.Load()
	return o != 0 && l.sp.a.Alive(o)
}

// Define returns the definition of the cache with id (see persist.Journal).
func (l logSide) Define(id uint32) (persist.Mutation, bool) {
	sp := l.sp
	if id >= min(sp.h.count.Load(), MaxCaches) {
		return persist.Mutation{}, false
	}
	return define(sp.regName(id), sp.entryOptions(id)), true
}

// define is the OpDefine mutation of a persistent cache: its loader
// options, if any, in its Value (encodeLoaderOptions).
func define(name string, o Options) persist.Mutation {
	return persist.Mutation{Op: persist.OpDefine, Cache: name, Expire: o.Expire, Durability: o.Durability, Value: encodeLoaderOptions(o)}
}

// loaderOptionsV1 is the encoding of a cache's loader options in its
// OpDefine record's value: 1 │ StaleFor │ FailSafeFor │ SoftTimeout │
// HardTimeout │ NotFoundExpire (i64 nanoseconds each) │ RefreshAhead
// (u32 millionths), little-endian. A cache without any logs no value (the
// record reads as before the options existed); a decoder takes a longer
// value of version 1 and ignores what follows (later options).
const loaderOptionsV1, loaderOptionsLen = 1, 1 + 5*8 + 4

func encodeLoaderOptions(o Options) []byte {
	ds := [5]time.Duration{o.StaleFor, o.FailSafeFor, o.SoftTimeout, o.HardTimeout, o.NotFoundExpire}
	if ds == [5]time.Duration{} && o.RefreshAhead == 0 {
		return nil
	}
	b := append(make([]byte, 0, loaderOptionsLen), loaderOptionsV1)
	for _, d := range ds {
		b = binary.LittleEndian.AppendUint64(b, uint64(d))
	}
	return binary.LittleEndian.AppendUint32(b, aheadMillionths(o.RefreshAhead))
}

// decodeLoaderOptions sets o's loader options from a define's value; a
// value it cannot read is an error wrapping ErrCorrupt.
func decodeLoaderOptions(b []byte, o *Options) error {
	if len(b) == 0 {
		return nil
	}
	if b[0] != loaderOptionsV1 || len(b) < loaderOptionsLen {
		return fmt.Errorf("%w: a cache definition's options (%d bytes, version %d)", ErrCorrupt, len(b), b[0])
	}
	ds := [5]*time.Duration{&o.StaleFor, &o.FailSafeFor, &o.SoftTimeout, &o.HardTimeout, &o.NotFoundExpire}
	for i, d := range ds {
		*d = time.Duration(binary.LittleEndian.Uint64(b[1+8*i:]))
	}
	o.RefreshAhead = float64(binary.LittleEndian.Uint32(b[41:])) / 1e6
	return nil
}

// LiveBytes returns the bytes of the live entries of every persistent cache.
func (l logSide) LiveBytes() int64 {
	sp := l.sp
	var live int64
	for _, name := range sp.Names() {
		if o, ok := sp.Lookup(name); ok && o.Persist {
			if c, err := sp.Use(name, o); err == nil {
				live += c.Stats().Bytes
			}
		}
	}
	return live
}

// Scan calls fn for the definition of every persistent cache, then for every
// entry of those caches not past its horizon (as OpSet mutations with their
// deadlines: an expired value its cache keeps for StaleFor or FailSafeFor
// is in the snapshot too, with its passed deadline). It
// copies each shard's entries under the shard's lock and calls fn after
// releasing it, so it sees each shard at one instant: combined with the
// journal records that follow the position read before the scan, this is a
// consistent snapshot.
func (l logSide) Scan(ctx context.Context, fn func(persist.Mutation) error) error {
	sp := l.sp
	n := min(sp.h.count.Load(), MaxCaches)
	persistent := [MaxCaches]bool{}
	for id := range n {
		if sp.h.registry[id].persist == 0 {
			continue
		}
		persistent[id] = true
		if err := fn(define(sp.regName(id), sp.entryOptions(id))); err != nil {
			return err
		}
	}
	var batch []persist.Mutation
	now := time.Now().UnixNano()
	for si := range sp.sh {
		sh := &sp.sh[si]
		if err := sp.lock(ctx, sh); err != nil {
			return fmt.Errorf("cache: scan: %w", err)
		}
		batch = batch[:0]
		sp.keptItems(sh, now, func(off uint64, r *recHdr) {
			if r.cache < MaxCaches && persistent[r.cache] {
				m := persist.Mutation{Op: persist.OpSet, Cache: sp.regName(r.cache), Key: string(sp.recKey(off, r)),
					Value: append([]byte(nil), sp.recVal(off, r)...), ExpireAt: r.exp}
				if f := uint8(r.owner & (itemCounter | itemTagged)); f != 0 {
					m.Op, m.Flags = persist.OpSetMeta, f
					m.Value = append(append([]byte(nil), sp.recTags(off, r)...), m.Value...)
				}
				batch = append(batch, m)
			}
		})
		sp.unlock(sh)
		for _, m := range batch {
			if err := fn(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// Restore returns a restorer of the space: while it is open this process
// journals nothing (what it applies is in the log already). The master uses
// one to replay the log before its workers start.
func (l logSide) Restore() persist.Restorer {
	l.sp.journaling.Store(false)
	return &restorer{sp: l.sp, caches: map[string]*Cache{}, now: time.Now().UnixNano()}
}

// restorer applies logged mutations to the space without journaling them
// again.
type restorer struct {
	sp     *Space
	caches map[string]*Cache
	now    int64
}

// Apply applies one mutation: a definition opens (or creates) the cache, a set
// stores the value unless its deadline passed, anything else deletes the key.
// A mutation of a cache not defined before returns an error wrapping
// ErrCorrupt.
func (r *restorer) Apply(ctx context.Context, m persist.Mutation) error {
	if m.Op == persist.OpDefine {
		o := Options{Persist: true, Expire: m.Expire, Durability: m.Durability}
		if err := decodeLoaderOptions(m.Value, &o); err != nil {
			return fmt.Errorf("cache %q: %w", m.Cache, err)
		}
		c, err := r.sp.Use(m.Cache, o)
		if err != nil {
			return err
		}
		r.caches[m.Cache] = c
		return nil
	}
	c := r.caches[m.Cache]
	if c == nil {
		return fmt.Errorf("%w: %v of %q in cache %q before the cache's definition", ErrCorrupt, m.Op, m.Key, m.Cache)
	}
	// A value whose deadline passed is restored as it was (expired, kept)
	// while its cache keeps it (StaleFor, FailSafeFor), else deleted.
	expired := m.ExpireAt != 0 && m.ExpireAt <= r.now
	kept := expired && r.now-m.ExpireAt < int64(c.opts.keep())
	if m.Op == persist.OpSetMeta || m.Op == persist.OpSet && kept {
		if expired && !kept {
			_, _, err := c.Del(ctx, m.Key)
			return err
		}
		return c.restoreMeta(ctx, m) // m.Flags is 0 for an OpSet
	}
	if m.Op == persist.OpSet {
		if expired {
			_, _, err := c.Del(ctx, m.Key)
			return err
		}
		opts := SetOptions{Expire: -1}
		if m.ExpireAt != 0 {
			opts.ExpireAt = time.Unix(0, m.ExpireAt)
		}
		_, err := c.Set(ctx, m.Key, m.Value, opts)
		return err
	}
	_, _, err := c.Del(ctx, m.Key)
	return err
}

// Close ends the restore: the process journals again.
func (r *restorer) Close() { r.sp.journaling.Store(true) }

// Stats returns the log writer's figures, from any process.
func (l logSide) Stats() persist.Stats {
	j := l.sp.jr.h
	c := &j.wstats
	tail, logged := j.tail.Load(), j.logged.Load()
	ps := persist.Stats{
		Attached: l.Attached(), Records: c.records.Load(), Bytes: c.bytes.Load(),
		Syncs: c.syncs.Load(), SyncTime: time.Duration(c.syncNanos.Load()), Snapshots: c.snapshots.Load(),
		Gaps: c.gaps.Load(), Lag: tail - min(logged, tail), Failures: c.failures.Load(), GapRequests: j.gapReq.Load(),
	}
	if f := j.failing.Load(); f != 0 {
		ps.Failing = failingError(f)
		if t := c.failSince.Load(); t != 0 {
			ps.FailingSince = time.Unix(0, t)
		}
	}
	return ps
}

// cursor is the log writer's persist.Cursor: its read position in the
// journal, and a buffer a record is copied into before it is decoded.
type cursor struct {
	sp  *Space
	cur uint64
	buf []byte
}

var _ persist.Cursor = (*cursor)(nil)

// Detach gives the log writer role up: Always writers stop waiting for it.
func (c *cursor) Detach() {
	j := c.sp.jr.h
	j.writer.CompareAndSwap(c.sp.p.Token(), 0)
	j.durEv.Wake()
}

// Position returns the journal position up to which the cursor has read.
func (c *cursor) Position() uint64 { return c.cur }

// Tail returns the journal's current end.
func (c *cursor) Tail() uint64 { return c.sp.jr.h.tail.Load() }

// Skip moves the read position to the journal's end.
func (c *cursor) Skip() uint64 {
	c.cur = c.sp.jr.h.tail.Load()
	return c.cur
}

// Rewind moves the read position (and the logged mark) back to pos.
func (c *cursor) Rewind(pos uint64) {
	if pos >= c.cur {
		return
	}
	c.cur = pos
	j := c.sp.jr.h
	if j.logged.Load() > pos {
		j.logged.Store(pos)
	}
}

// SetFailing records that the log cannot be written (err) or that it can
// again (nil). While it is failing, Set and Del of persistent caches return
// ErrPersistFailing and Always writers that wait return ErrNotDurable.
func (c *cursor) SetFailing(err error) bool {
	j := c.sp.jr.h
	w := &j.wstats
	if err == nil {
		if j.failing.Swap(0) == 0 {
			return false
		}
		w.failSince.Store(0)
		return true
	}
	f := failingOther
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		f = uint32(errno)
	}
	was := j.failing.Swap(f)
	if was == 0 {
		w.failures.Add(1)
		w.failSince.Store(time.Now().UnixNano())
	}
	j.durEv.Wake() // the Always writers waiting return now
	return was == 0
}

// CoverGaps returns the function that marks the gap requests counted up to
// the call as covered by the snapshot about to be taken.
func (c *cursor) CoverGaps() func() {
	j := c.sp.jr.h
	g := j.gapReq.Load()
	return func() {
		if g > j.gapDone.Load() {
			j.gapDone.Store(g)
		}
	}
}

// logOps maps a journal op to the log's; an op no writer journals (damage)
// is logged as an eviction, a delete.
var logOps = [256]persist.Op{opSet: persist.OpSet, opDel: persist.OpDel, opExpire: persist.OpExpire,
	opEvict: persist.OpEvict, opDefine: persist.OpDefine}

// metaFlags returns the item flags a journal record's flags byte carries
// (jflagCounter, jflagTagged: the item flags shifted left by one).
func metaFlags(jflags uint8) uint8 { return jflags >> 1 & (itemCounter | itemTagged) }

// logOp returns the log's op for journal op o.
func logOp(o uint8) persist.Op {
	if op := logOps[o]; op != 0 {
		return op
	}
	return persist.OpEvict
}

// Read calls fn for up to max journal records of persistent caches from the
// read position on, and advances (see persist.Cursor).
func (c *cursor) Read(max int, fn func(r persist.Record) error) (int, error) {
	j := &c.sp.jr
	if j.h.gapReq.Load() != j.h.gapDone.Load() {
		// A writer could not journal a change: skip to the end, which the
		// snapshot the caller takes now covers.
		c.cur = j.h.tail.Load()
		return 0, persist.ErrJournalGap
	}
	n := 0
	for n < max {
		t := j.h.tail.Load()
		if c.cur == t {
			return n, nil
		}
		if t-c.cur > j.cap || t < c.cur {
			c.cur = t
			return n, persist.ErrJournalGap
		}
		phys := c.cur & (j.cap - 1)
		if j.cap-phys < jrecHeader {
			c.cur += j.cap - phys
			continue
		}
		size := uint64(leUint32(j.data[phys:]))
		if size < jrecHeader || size%8 != 0 || phys+size > j.cap || c.cur+size > t {
			c.cur = j.h.tail.Load()
			return n, persist.ErrJournalGap
		}
		c.buf = append(c.buf[:0], j.data[phys:phys+size]...)
		order.LoadFence() // arm64: the copy before the claim check (doc.go, fence 5)
		if j.h.claim.Load() > c.cur+j.cap {
			c.cur = j.h.tail.Load()
			return n, persist.ErrJournalGap
		}
		c.cur += size
		n++
		b := c.buf
		if b[4] == opFiller {
			continue
		}
		if b[4] == opRepair {
			// A repaired shard may hold a change nobody journalled: the
			// snapshot the caller takes now logs the shard as it is.
			c.cur = j.h.tail.Load()
			return n, persist.ErrJournalGap
		}
		klen := int(binary.LittleEndian.Uint16(b[6:]))
		vlen := int(binary.LittleEndian.Uint32(b[12:]))
		id := binary.LittleEndian.Uint32(b[8:])
		if jrecHeader+klen+vlen > len(b) || id >= min(c.sp.h.count.Load(), MaxCaches) {
			c.cur = j.h.tail.Load()
			return n, persist.ErrJournalGap
		}
		if c.sp.h.registry[id].persist == 0 {
			continue
		}
		r := persist.Record{Op: logOp(b[4]), Cache: id, Key: b[jrecHeader : jrecHeader+klen],
			ExpireAt: int64(binary.LittleEndian.Uint64(b[16:])), End: c.cur}
		if b[4] == opSet {
			r.Value = b[jrecHeader+klen : jrecHeader+klen+vlen]
			if f := metaFlags(b[5]); f != 0 {
				r.Op, r.Flags = persist.OpSetMeta, f
			}
		} else {
			r.ExpireAt = 0
		}
		if err := fn(r); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Wait sleeps until the journal has records past the read position, an Always
// writer asks, the journal fills past a quarter, or timeout passes.
func (c *cursor) Wait(timeout time.Duration) {
	j := c.sp.jr.h
	tk := j.pev.Prepare()
	if j.tail.Load() != c.cur {
		j.pev.Cancel()
		return
	}
	j.pev.Sleep(tk, timeout)
}

// Logged records that every record before pos is in the log, so that a
// restarted log writer resumes there, and releases throttled writers.
func (c *cursor) Logged(pos uint64) {
	c.sp.jr.h.logged.Store(pos)
	c.sp.jr.h.durEv.Wake()
}

// Durable records that every record before pos is on disk and wakes the
// Always writers waiting for it. In the terminology of the Go memory model,
// Durable synchronizes before the return of every Set whose record ends at or
// before pos.
func (c *cursor) Durable(pos uint64) {
	j := c.sp.jr.h
	if d := j.durable.Load(); pos > d || d > j.tail.Load() { // durable past tail is damage: replaced
		j.durable.Store(pos)
	}
	j.durEv.Wake()
}

// CountLogged adds records and bytes appended to the log to the figures.
func (c *cursor) CountLogged(records, bytes int) {
	w := &c.sp.jr.h.wstats
	w.records.Add(uint64(records))
	w.bytes.Add(uint64(bytes))
}

// CountSync adds one fsync that took d to the figures.
func (c *cursor) CountSync(d time.Duration) {
	w := &c.sp.jr.h.wstats
	w.syncs.Add(1)
	w.syncNanos.Add(uint64(d))
}

// CountSnapshot adds a snapshot (gap: taken because the journal lapped).
func (c *cursor) CountSnapshot(gap bool) {
	w := &c.sp.jr.h.wstats
	w.snapshots.Add(1)
	if gap {
		w.gaps.Add(1)
	}
}

// regName returns the name of registry entry id.
func (sp *Space) regName(id uint32) string {
	return string(trimNUL(sp.h.registry[id].name[:]))
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func leUint32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
