package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/order"
)

// OpDefine is the Op of a Mutation that defines a persistent cache (its name
// and options); it precedes every other mutation of that cache.
const OpDefine Op = opDefine

// Mutation is one change of a persistent cache, as the cache manager logs it
// and replays it.
type Mutation struct {
	Op       Op
	Cache    string
	Options  Options // OpDefine only
	Key      string  // not for OpDefine
	Value    []byte  // OpSet only
	ExpireAt int64   // OpSet: absolute deadline, unix nanoseconds; 0 = never
}

// Persister is the cache manager's reader of the journal: it sees every
// mutation of every persistent cache, in an order that keeps each key's
// mutations in the order they happened. One process at a time holds it.
type Persister struct {
	sp  *Space
	cur uint64
	buf []byte
}

// AttachPersister makes this process the space's persister, with def as the
// cluster's default durability. It resumes where the previous persister said
// it had logged everything (Persister.Logged). It returns ErrPersisterBusy
// while another live process persists.
func (sp *Space) AttachPersister(def Durability) (*Persister, error) {
	j := sp.jr.h
	me := sp.p.Token()
	for {
		cur := j.owner.Load()
		if cur != 0 && cur != me && sp.a.Alive(cur) {
			return nil, ErrPersisterBusy
		}
		if j.owner.CompareAndSwap(cur, me) {
			break
		}
	}
	j.defDur.Store(uint32(def))
	return &Persister{sp: sp, cur: j.persistd.Load()}, nil
}

// PersisterAttached reports whether a live process is the space's persister.
func (sp *Space) PersisterAttached() bool {
	o := sp.jr.h.owner.Load()
	return o != 0 && sp.a.Alive(o)
}

// Detach gives the persister role up: Always writers stop waiting for it.
func (p *Persister) Detach() {
	j := p.sp.jr.h
	j.owner.CompareAndSwap(p.sp.p.Token(), 0)
	j.durEv.Wake()
}

// Position returns the journal position up to which the persister has read.
func (p *Persister) Position() uint64 { return p.cur }

// Tail returns the journal's current end.
func (p *Persister) Tail() uint64 { return p.sp.jr.h.tail.Load() }

// Skip moves the read position to the journal's end, when what lies before is
// already covered (after a replay, or after a snapshot taken because of a
// gap). It returns the new position.
func (p *Persister) Skip() uint64 {
	p.cur = p.sp.jr.h.tail.Load()
	return p.cur
}

// Rewind moves the read position back to pos (at most the current one),
// after the log lost what was written past pos (a write or fsync that
// failed): the records from pos on are read again, or, if the journal has
// overwritten them since, Read reports ErrJournalGap. It lowers the logged
// position to pos too, so that a persister that takes over re-reads them.
func (p *Persister) Rewind(pos uint64) {
	if pos >= p.cur {
		return
	}
	p.cur = pos
	j := p.sp.jr.h
	if j.persistd.Load() > pos {
		j.persistd.Store(pos)
	}
}

// SetFailing records that the persister cannot write its log (err: the
// error, whose errno /status shows) or, with nil, that it can again. While
// it is failing, Set and Del of persistent caches return ErrPersistFailing
// and Always writers that wait return ErrNotDurable. It reports whether the
// state changed.
func (p *Persister) SetFailing(err error) bool {
	j := p.sp.jr.h
	c := &j.pstats
	if err == nil {
		if j.failing.Swap(0) == 0 {
			return false
		}
		c.failSince.Store(0)
		return true
	}
	f := failingOther
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		f = uint32(errno)
	}
	was := j.failing.Swap(f)
	if was == 0 {
		c.failures.Add(1)
		c.failSince.Store(time.Now().UnixNano())
	}
	j.durEv.Wake() // the Always writers waiting return now
	return was == 0
}

// CoverGaps returns a function that records, once the snapshot it was
// called before is complete, that the snapshot covers every change that
// could not be journaled up to the call (Read stops reporting them as a
// gap). Call it before the snapshot's scan begins.
func (p *Persister) CoverGaps() func() {
	j := p.sp.jr.h
	g := j.gapReq.Load()
	return func() {
		if g > j.gapDone.Load() {
			j.gapDone.Store(g)
		}
	}
}

// Record is one journal record of a persistent cache as Persister.Read hands
// it over. Key and Value point into the persister's buffer: they are valid
// only during the call.
type Record struct {
	Op       Op
	Cache    uint32 // the cache's id: see CacheInfo
	Key      []byte // OpDefine: the cache's name
	Value    []byte // OpSet only
	ExpireAt int64  // OpSet: absolute deadline, unix nanoseconds; 0 = never
	End      uint64 // the journal position just past the record
}

// Read calls fn for up to max journal records of persistent caches from the
// read position on, and advances. It returns the number of records read (of
// any cache) and ErrJournalGap if records were overwritten before it read
// them: the position then jumps to the end and the caller must snapshot.
func (p *Persister) Read(max int, fn func(r Record) error) (int, error) {
	j := &p.sp.jr
	if j.h.gapReq.Load() != j.h.gapDone.Load() {
		// A writer could not journal a change: skip to the end, which the
		// snapshot the caller takes now covers.
		p.cur = j.h.tail.Load()
		return 0, ErrJournalGap
	}
	n := 0
	for n < max {
		t := j.h.tail.Load()
		if p.cur == t {
			return n, nil
		}
		if t-p.cur > j.cap || t < p.cur {
			p.cur = t
			return n, ErrJournalGap
		}
		phys := p.cur & (j.cap - 1)
		if j.cap-phys < jrecHeader {
			p.cur += j.cap - phys
			continue
		}
		size := uint64(leUint32(j.data[phys:]))
		if size < jrecHeader || size%8 != 0 || phys+size > j.cap || p.cur+size > t {
			p.cur = j.h.tail.Load()
			return n, ErrJournalGap
		}
		p.buf = append(p.buf[:0], j.data[phys:phys+size]...)
		order.LoadFence() // arm64: the copy before the claim check (doc.go, fence 5)
		if j.h.claim.Load() > p.cur+j.cap {
			p.cur = j.h.tail.Load()
			return n, ErrJournalGap
		}
		p.cur += size
		n++
		b := p.buf
		if b[4] == opFiller {
			continue
		}
		klen := int(binary.LittleEndian.Uint16(b[6:]))
		vlen := int(binary.LittleEndian.Uint32(b[12:]))
		id := binary.LittleEndian.Uint32(b[8:])
		if jrecHeader+klen+vlen > len(b) || id >= min(p.sp.h.count.Load(), MaxCaches) {
			p.cur = j.h.tail.Load()
			return n, ErrJournalGap
		}
		if p.sp.h.registry[id].persist == 0 {
			continue
		}
		r := Record{Op: Op(b[4]), Cache: id, Key: b[jrecHeader : jrecHeader+klen],
			ExpireAt: int64(binary.LittleEndian.Uint64(b[16:])), End: p.cur}
		if r.Op == OpSet {
			r.Value = b[jrecHeader+klen : jrecHeader+klen+vlen]
		} else {
			r.ExpireAt = 0
		}
		if err := fn(r); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CacheInfo returns the name and options of the cache with id (as in
// Record.Cache).
func (sp *Space) CacheInfo(id uint32) (string, Options, bool) {
	if id >= min(sp.h.count.Load(), MaxCaches) {
		return "", Options{}, false
	}
	return sp.regName(id), sp.entryOptions(id), true
}

// Wait sleeps until the journal has records past the read position, an Always
// writer asks, the journal fills past a quarter, or timeout passes.
func (p *Persister) Wait(timeout time.Duration) {
	j := p.sp.jr.h
	tk := j.pev.Prepare()
	if j.tail.Load() != p.cur {
		j.pev.Cancel()
		return
	}
	j.pev.Sleep(tk, timeout)
}

// Logged records that every record before pos is in the persister's log, so
// that a restarted persister resumes there, and releases throttled writers.
func (p *Persister) Logged(pos uint64) {
	p.sp.jr.h.persistd.Store(pos)
	p.sp.jr.h.durEv.Wake()
}

// Durable records that every record before pos is on disk and wakes the
// Always writers waiting for it. In the terminology of the Go memory model,
// Durable synchronizes before the return of every Set whose record ends at or
// before pos.
func (p *Persister) Durable(pos uint64) {
	j := p.sp.jr.h
	if d := j.durable.Load(); pos > d || d > j.tail.Load() { // durable past tail is damage: replaced
		j.durable.Store(pos)
	}
	j.durEv.Wake()
}

// Scan calls fn for the definition of every persistent cache, then for every
// live entry of those caches (as OpSet mutations with their deadlines). It
// copies each shard's entries under the shard's lock and calls fn after
// releasing it, so it sees each shard at one instant: combined with the
// journal records that follow the position read before the scan, this is a
// consistent snapshot.
func (sp *Space) Scan(ctx context.Context, fn func(Mutation) error) error {
	n := min(sp.h.count.Load(), MaxCaches)
	persistent := [MaxCaches]bool{}
	for id := range n {
		if sp.h.registry[id].persist == 0 {
			continue
		}
		persistent[id] = true
		if err := fn(Mutation{Op: OpDefine, Cache: sp.regName(id), Options: sp.entryOptions(id)}); err != nil {
			return err
		}
	}
	var batch []Mutation
	now := time.Now().UnixNano()
	for si := range sp.sh {
		sh := &sp.sh[si]
		if err := sp.lock(ctx, sh); err != nil {
			return fmt.Errorf("cache: scan: %w", err)
		}
		batch = batch[:0]
		sp.liveItems(sh, now, func(off uint64, r *recHdr) {
			if r.cache < MaxCaches && persistent[r.cache] {
				batch = append(batch, Mutation{Op: OpSet, Cache: sp.regName(r.cache), Key: string(sp.recKey(off, r)),
					Value: append([]byte(nil), sp.recVal(off, r)...), ExpireAt: r.exp})
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

// Restorer applies logged mutations to the space without journaling them
// again (they are in the log already). The master uses one to replay the log
// before its workers start. A Restorer must be closed; while it is open this
// process journals nothing.
type Restorer struct {
	sp     *Space
	caches map[string]*Cache
	now    int64
}

// Restorer returns a Restorer for sp.
func (sp *Space) Restorer() *Restorer {
	sp.journaling.Store(false)
	return &Restorer{sp: sp, caches: map[string]*Cache{}, now: time.Now().UnixNano()}
}

// Apply applies one mutation: a definition opens (or creates) the cache, a set
// stores the value unless its deadline passed, anything else deletes the key.
// A mutation of a cache not defined before returns an error wrapping
// ErrCorrupt.
func (r *Restorer) Apply(ctx context.Context, m Mutation) error {
	if m.Op == OpDefine {
		c, err := r.sp.Use(m.Cache, m.Options)
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
	if m.Op == OpSet {
		if m.ExpireAt != 0 && m.ExpireAt <= r.now {
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
func (r *Restorer) Close() { r.sp.journaling.Store(true) }

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

// PersistStats are the persister's figures (see Space.PersistStats).
type PersistStats struct {
	Attached  bool          // a live process persists the space
	Records   uint64        // records appended to the log
	Bytes     uint64        // bytes appended to the log
	Syncs     uint64        // fsyncs of the log
	SyncTime  time.Duration // total time spent in them
	Snapshots uint64        // snapshots written
	Gaps      uint64        // times the journal lapped the persister (each cost a snapshot)
	Lag       uint64        // journal bytes not yet in the log

	// Failing is the error while the persister cannot write its log (nil
	// when it can): it wraps ErrPersistFailing and names the cause, such as
	// syscall.ENOSPC. Persistent changes are refused meanwhile.
	Failing      error
	FailingSince time.Time // when the current failure began (zero: none)
	Failures     uint64    // times the persister began failing
	GapRequests  uint64    // changes that could not be journaled (each costs a snapshot)
}

// PersistStats returns the persister's figures, from any process.
func (sp *Space) PersistStats() PersistStats {
	j := sp.jr.h
	c := &j.pstats
	tail, logged := j.tail.Load(), j.persistd.Load()
	ps := PersistStats{
		Attached: sp.PersisterAttached(), Records: c.records.Load(), Bytes: c.bytes.Load(),
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

// CountLogged adds records and bytes appended to the log to the figures.
func (p *Persister) CountLogged(records, bytes int) {
	c := &p.sp.jr.h.pstats
	c.records.Add(uint64(records))
	c.bytes.Add(uint64(bytes))
}

// CountSync adds one fsync that took d to the figures.
func (p *Persister) CountSync(d time.Duration) {
	c := &p.sp.jr.h.pstats
	c.syncs.Add(1)
	c.syncNanos.Add(uint64(d))
}

// CountSnapshot adds a snapshot (gap: taken because the journal lapped).
func (p *Persister) CountSnapshot(gap bool) {
	c := &p.sp.jr.h.pstats
	c.snapshots.Add(1)
	if gap {
		c.gaps.Add(1)
	}
}
