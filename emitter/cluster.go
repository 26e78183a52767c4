package emitter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/ring"
	"github.com/cluster2/cluster2/shm"
)

// Role is the part an emitter plays in a cluster.
type Role uint8

// The roles.
const (
	// RoleMaster lays out the emitter region, owns one ring pair per worker
	// slot and routes events between workers.
	RoleMaster Role = iota + 1
	// RoleWorker attaches to its slot's ring pair, armed by the master.
	RoleWorker
)

// String returns "master" or "worker".
func (r Role) String() string {
	switch r {
	case RoleMaster:
		return "master"
	case RoleWorker:
		return "worker"
	}
	return "role(" + fmt.Sprint(uint8(r)) + ")"
}

// state is an attached emitter's cluster side.
type state struct {
	em        *Emitter
	role      Role
	a         *shm.Arena
	p         *shm.Proc
	hdr       *regionHeader
	entries   []slotEntry
	ringCap   int
	masterPid int
	ropts     ring.Options
	log       *slog.Logger
	host      string // the host id, from the region's host block

	seq     atomic.Uint64         // worker: the last recordHosts sequence
	pendMu  sync.Mutex            // worker: guards pending
	pending map[uint64]chan error // worker: emits to AllHosts waiting for the master's answer, by sequence

	armMu sync.Mutex // master: serializes AddWorker and RemoveWorker

	linksMu sync.RWMutex
	byPid   map[int]*link // master: live worker links; worker: the master's link
	list    []*link       // the values of byPid, in slot order; replaced, never modified

	closeOnce sync.Once
}

// link is one ring pair seen from this process: out is written by us, in
// read by our reader goroutine.
type link struct {
	st       *state
	pid      int // the peer
	slot     int // the worker's slot
	outRing  *ring.Ring
	inRing   *ring.Ring
	sendMu   sync.Mutex
	out      *ring.Producer // nil once torn down
	in       *ring.Consumer
	deadFlag chan struct{} // closed when the peer is known dead or the link torn down
	deadOnce sync.Once
	ctx      context.Context // the reader's life
	cancel   context.CancelFunc
	done     chan struct{} // closed when the reader returned
	slab     slab          // reader-owned
	scratch  []byte        // reader-owned: the master's publication of a worker's event
	ack      []byte        // reader-owned: the master's answer to it
	onRecord func(typ uint32, payload []byte)
}

func (l *link) dead() bool {
	select {
	case <-l.deadFlag:
		return true
	default:
		return false
	}
}

func (l *link) markDead() { l.deadOnce.Do(func() { close(l.deadFlag) }) }

// waitCtx makes link a waiter: deliveries from its reader wait as long as
// the reader lives.
func (l *link) waitCtx() context.Context { return l.ctx }

// Open returns a new emitter attached to arena a as p with role; see New and
// Attach.
func Open(ctx context.Context, a *shm.Arena, p *shm.Proc, role Role, opts *Options) (*Emitter, error) {
	em, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := em.Attach(ctx, a, p, role); err != nil {
		return nil, err
	}
	return em, nil
}

// Attach connects the emitter to the cluster of arena a, as process p
// (this process's membership) in role. Listeners registered before stay.
//
// The master creates the emitter region (sized by Options.Slots and
// Options.RingSize) and then arms each worker's slot with AddWorker once
// the worker's pid is known. A worker finds the region and waits, at most
// until ctx ends, until the master armed its slot (p.Slot()) for its pid;
// then it opens its ends of the slot's two rings.
func (em *Emitter) Attach(ctx context.Context, a *shm.Arena, p *shm.Proc, role Role) error {
	if em.st.Load() != nil {
		return ErrAttached
	}
	if p.Pid() != em.pid {
		return fmt.Errorf("emitter: %w: proc of pid %d in process %d", ErrInvalidConfig, p.Pid(), em.pid)
	}
	st := &state{em: em, role: role, a: a, p: p, log: em.opts.Logger.With("emitter", role.String(), "pid", em.pid),
		ropts: ring.Options{Spin: ringSpin, PeerCheck: em.opts.PeerCheck, Park: true}, byPid: map[int]*link{},
		pending: map[uint64]chan error{}}
	var err error
	switch role {
	case RoleMaster:
		err = st.attachMaster(ctx)
	case RoleWorker:
		err = st.attachWorker(ctx)
	default:
		err = fmt.Errorf("emitter: %w: role %v", ErrInvalidConfig, role)
	}
	if err != nil {
		st.close()
		return fmt.Errorf("emitter: attach as %v: %w", role, err)
	}
	if !em.st.CompareAndSwap(nil, st) {
		st.close()
		return ErrAttached
	}
	return nil
}

func (st *state) attachMaster(ctx context.Context) error {
	o := st.em.opts
	slots := o.Slots
	if slots == 0 || slots > st.a.SlotCount() {
		slots = st.a.SlotCount()
	}
	host := st.em.hostOf(nil)
	if st.em.hostName.Load() == nil {
		host = defaultHost(st.em.pid, time.Now())
	}
	off, _, err := st.a.Region(ctx, RegionName, regionSize(slots), func(off shm.Off) error {
		hb := shm.Slice[byte](st.a, off+hostBlockOff(slots), hostBlockSize)
		hb[0] = uint8(len(host))
		copy(hb[1:], host)
		h := shm.Ptr[regionHeader](st.a, off)
		h.version = regionVersion
		h.slots = uint32(slots)
		h.ringCap = uint32(o.RingSize)
		h.magic = regionMagic
		return nil
	})
	if err != nil {
		return err
	}
	if err := st.bind(off); err != nil {
		return err
	}
	st.masterPid = st.em.pid
	st.hdr.masterPid.Store(uint32(st.em.pid)) // release: workers read it after their slot's pid
	return nil
}

// bind checks the region at off and points st at it.
func (st *state) bind(off shm.Off) error {
	if !st.a.Contains(off, regionHeaderSize) {
		return fmt.Errorf("%w: region at %d", ErrCorrupt, off)
	}
	h := shm.Ptr[regionHeader](st.a, off)
	if h.magic != regionMagic || h.version != regionVersion {
		return fmt.Errorf("%w: magic %#x version %d", ErrCorrupt, h.magic, h.version)
	}
	c := int(h.ringCap)
	if c < 4<<10 || c > 64<<20 || c&(c-1) != 0 || h.slots == 0 || !st.a.Contains(off, uint64(regionSize(int(h.slots)))) {
		return fmt.Errorf("%w: %d slots of %d-byte rings", ErrCorrupt, h.slots, c)
	}
	hb := shm.Slice[byte](st.a, off+hostBlockOff(int(h.slots)), hostBlockSize)
	if hb[0] == 0 {
		return fmt.Errorf("%w: no host id", ErrCorrupt)
	}
	st.host = string(hb[1 : 1+int(hb[0])])
	st.hdr = h
	st.ringCap = c
	st.entries = shm.Slice[slotEntry](st.a, off+regionHeaderSize, int(h.slots))
	return nil
}

func (st *state) attachWorker(ctx context.Context) error {
	pid := uint32(st.em.pid)
	var off shm.Off
	for { // the master creates the region before it spawns workers; wait anyway
		o, _, ok := st.a.Lookup(RegionName)
		if ok {
			off = o
			break
		}
		if err := xtime.SleepCtx(ctx, time.Millisecond); err != nil {
			return fmt.Errorf("no region %q: %w", RegionName, err)
		}
	}
	if err := st.bind(off); err != nil {
		return err
	}
	slot := st.p.Slot()
	if slot <= 0 || slot >= len(st.entries) {
		return fmt.Errorf("emitter: %w: slot %d outside the region's %d", ErrInvalidConfig, slot, len(st.entries))
	}
	e := &st.entries[slot]
	for {
		t := st.hdr.armed.Prepare()
		// acquire: the offsets and the rings' emptiness were stored before pid.
		if e.pid.Load() == pid {
			st.hdr.armed.Cancel()
			break
		}
		if err := ctx.Err(); err != nil {
			st.hdr.armed.Cancel()
			return fmt.Errorf("slot %d not armed for pid %d: %w", slot, pid, err)
		}
		st.hdr.armed.Sleep(t, xtime.Bound(ctx, 100*time.Millisecond))
	}
	st.masterPid = int(st.hdr.masterPid.Load())
	toWorker, err := ring.Attach(st.a, shm.Off(e.toWorker.Load()))
	if err != nil {
		return err
	}
	toMaster, err := ring.Attach(st.a, shm.Off(e.toMaster.Load()))
	if err != nil {
		return err
	}
	in, err := toWorker.Consumer(st.p, &st.ropts)
	if err != nil {
		return err
	}
	out, err := toMaster.Producer(ctx, st.p, &st.ropts)
	if err != nil {
		return err
	}
	l := st.newLink(st.masterPid, slot, toMaster, toWorker, out, in)
	l.onRecord = func(typ uint32, b []byte) { st.fromMaster(l, typ, b) }
	st.setLinks(map[int]*link{l.pid: l})
	go st.readLoop(l)
	return nil
}

func (st *state) newLink(pid, slot int, outRing, inRing *ring.Ring, out *ring.Producer, in *ring.Consumer) *link {
	ctx, cancel := context.WithCancel(context.Background())
	return &link{st: st, pid: pid, slot: slot, outRing: outRing, inRing: inRing, out: out, in: in,
		deadFlag: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// setLinks replaces the link table.
func (st *state) setLinks(m map[int]*link) {
	list := make([]*link, 0, len(m))
	for _, l := range m {
		list = append(list, l)
	}
	slices.SortFunc(list, func(a, b *link) int { return a.slot - b.slot })
	st.linksMu.Lock()
	st.byPid, st.list = m, list
	st.linksMu.Unlock()
}

func (st *state) links() []*link {
	st.linksMu.RLock()
	defer st.linksMu.RUnlock()
	return st.list
}

func (st *state) linkOf(pid int) *link {
	st.linksMu.RLock()
	defer st.linksMu.RUnlock()
	return st.byPid[pid]
}

// AddWorker arms slot for the worker process pid: the slot's ring pair is
// allocated on its first use, emptied when the slot is reused, and the
// worker's Attach (waiting in the worker) proceeds. Call it in the master
// once the worker's pid is known (after starting it), before or after the
// worker calls Attach. A link that the slot still had (its worker dead) is
// torn down first; a slot whose previous worker still lives returns an
// error wrapping shm.ErrSlotBusy.
func (em *Emitter) AddWorker(ctx context.Context, pid, slot int) error {
	st := em.st.Load()
	if st == nil || st.role != RoleMaster {
		return fmt.Errorf("emitter: add worker %d: %w: not an attached master", pid, ErrInvalidConfig)
	}
	if err := st.addWorker(ctx, pid, slot); err != nil {
		return fmt.Errorf("emitter: add worker %d in slot %d: %w", pid, slot, err)
	}
	return nil
}

func (st *state) addWorker(ctx context.Context, pid, slot int) error {
	if slot <= 0 || slot >= len(st.entries) {
		return fmt.Errorf("emitter: %w: slot %d outside the region's %d", ErrInvalidConfig, slot, len(st.entries))
	}
	if pid <= 0 || pid == st.em.pid {
		return fmt.Errorf("emitter: %w: pid %d", ErrInvalidConfig, pid)
	}
	st.armMu.Lock()
	defer st.armMu.Unlock()
	for _, l := range st.links() {
		if l.slot == slot || l.pid == pid {
			st.teardown(l)
		}
	}
	e := &st.entries[slot]
	e.pid.Store(0) // disarmed while we reset
	var toWorker, toMaster *ring.Ring
	var err error
	if e.toWorker.Load() == 0 {
		size := ring.Size(st.ringCap)
		off, aerr := st.a.Alloc(ctx, 2*size)
		if aerr != nil {
			return aerr
		}
		if toWorker, err = ring.Init(st.a, off, st.ringCap); err != nil {
			return err
		}
		if toMaster, err = ring.Init(st.a, off+shm.Off(size), st.ringCap); err != nil {
			return err
		}
		e.toWorker.Store(uint64(off))
		e.toMaster.Store(uint64(off) + uint64(size))
	} else {
		if toWorker, toMaster, err = st.attachRings(e); err != nil {
			return err
		}
		// Reset is only for rings nobody uses: the previous worker must be dead.
		for _, tok := range []uint32{toWorker.ConsumerToken(), toMaster.ProducerToken()} {
			if tok != 0 && tok != st.p.Token() && st.a.Alive(tok) {
				return fmt.Errorf("%w: a live process still holds its rings", shm.ErrSlotBusy)
			}
		}
		toWorker.Reset()
		toMaster.Reset()
	}
	if err := st.openWorkerLink(ctx, pid, slot, toWorker, toMaster); err != nil {
		return err
	}
	e.gen.Add(1)
	// release: the rings are empty and their offsets stored before the
	// worker, which loads pid (acquire), opens them.
	e.pid.Store(uint32(pid))
	st.hdr.armed.Wake()
	return nil
}

// AdoptWorker takes up the link with worker pid, running in slot, after this
// master process replaced its program image (an in-place upgrade: the
// previous image armed the slot, and shm.Arena.Resume gave this image the
// same owner generation). The slot's rings stay as they are: what either
// side committed is delivered, a record the previous image was writing when
// it was replaced is skipped (ring.Producer), and one it was reading is
// delivered again. The worker notices nothing: its peer never died. A slot
// not armed for pid returns an error wrapping ErrInvalidConfig.
func (em *Emitter) AdoptWorker(ctx context.Context, pid, slot int) error {
	st := em.st.Load()
	if st == nil || st.role != RoleMaster {
		return fmt.Errorf("emitter: adopt worker %d: %w: not an attached master", pid, ErrInvalidConfig)
	}
	if slot <= 0 || slot >= len(st.entries) || pid <= 0 {
		return fmt.Errorf("emitter: adopt worker %d: %w: slot %d outside the region's %d", pid, ErrInvalidConfig, slot, len(st.entries))
	}
	st.armMu.Lock()
	defer st.armMu.Unlock()
	e := &st.entries[slot]
	if e.pid.Load() != uint32(pid) || e.toWorker.Load() == 0 {
		return fmt.Errorf("emitter: adopt worker %d: %w: slot %d is not armed for it", pid, ErrInvalidConfig, slot)
	}
	toWorker, toMaster, err := st.attachRings(e)
	if err == nil {
		err = st.openWorkerLink(ctx, pid, slot, toWorker, toMaster)
	}
	if err != nil {
		return fmt.Errorf("emitter: adopt worker %d: %w", pid, err)
	}
	return nil
}

// attachRings attaches the two rings slot entry e was armed with.
func (st *state) attachRings(e *slotEntry) (toWorker, toMaster *ring.Ring, err error) {
	if toWorker, err = ring.Attach(st.a, shm.Off(e.toWorker.Load())); err != nil {
		return nil, nil, err
	}
	if toMaster, err = ring.Attach(st.a, shm.Off(e.toMaster.Load())); err != nil {
		return nil, nil, err
	}
	return toWorker, toMaster, nil
}

// openWorkerLink opens the master's ends of a worker's rings (producer of
// toWorker, consumer of toMaster), adds the link to the table and starts
// its reader. The caller holds armMu.
func (st *state) openWorkerLink(ctx context.Context, pid, slot int, toWorker, toMaster *ring.Ring) error {
	out, err := toWorker.Producer(ctx, st.p, &st.ropts)
	if err != nil {
		return err
	}
	in, err := toMaster.Consumer(st.p, &st.ropts)
	if err != nil {
		return err
	}
	l := st.newLink(pid, slot, toWorker, toMaster, out, in)
	l.onRecord = func(typ uint32, b []byte) { st.fromWorker(l, typ, b) }
	m := make(map[int]*link, len(st.byPid)+1)
	for _, x := range st.links() {
		m[x.pid] = x
	}
	m[pid] = l
	st.setLinks(m)
	go st.readLoop(l)
	return nil
}

// RemoveWorker tells the master that worker pid is gone (the runtime calls
// it when it reaps the process): events to it are dropped and counted from
// now on, and what it sent before dying is still delivered. Without it the
// master notices a dead worker by itself within Options.PeerCheck once the
// worker's ring is idle. Unknown pids are ignored.
func (em *Emitter) RemoveWorker(pid int) {
	st := em.st.Load()
	if st == nil || st.role != RoleMaster {
		return
	}
	st.armMu.Lock()
	defer st.armMu.Unlock()
	if l := st.linkOf(pid); l != nil {
		st.teardown(l)
		st.entries[l.slot].pid.CompareAndSwap(uint32(pid), 0)
	}
}

// teardown stops using a link: nothing more is sent on it, its reader
// delivers what the peer committed and stops, and it leaves the table. The
// caller holds armMu.
func (st *state) teardown(l *link) {
	l.markDead()
	l.cancel()
	<-l.done
	l.sendMu.Lock()
	l.out = nil
	l.sendMu.Unlock()
	m := make(map[int]*link, len(st.byPid))
	for _, x := range st.links() {
		if x != l {
			m[x.pid] = x
		}
	}
	st.setLinks(m)
}

// Detach disconnects the emitter from its cluster: its ring readers stop
// (delivering what was already committed), and from then on it delivers
// within its process only, as New made it; its listeners stay. Attach may
// be called again (the runtime detaches the Cluster's emitter when a master
// stops, so that a process can run another cluster later). Detach of an
// unattached emitter does nothing.
func (em *Emitter) Detach() {
	if st := em.st.Swap(nil); st != nil {
		st.close()
	}
}

// Peers returns the pids this process can send to: in the master, every
// worker whose slot is armed and not known dead; in a worker, the master's
// pid while it is not known dead.
func (em *Emitter) Peers() []int {
	st := em.st.Load()
	if st == nil {
		return nil
	}
	var out []int
	for _, l := range st.links() {
		if !l.dead() {
			out = append(out, l.pid)
		}
	}
	return out
}

// Role returns the emitter's role, or 0 while it is not attached.
func (em *Emitter) Role() Role {
	if st := em.st.Load(); st != nil {
		return st.role
	}
	return 0
}

// MasterPid returns the master's pid: this process's in the master or an
// unattached emitter.
func (em *Emitter) MasterPid() int {
	if st := em.st.Load(); st != nil {
		return st.masterPid
	}
	return em.pid
}

// SlotBytes returns the arena bytes a worker slot's pair of rings takes
// when the master arms the slot the first time (2 × ring.Size of the ring
// capacity; kept for the slot's later workers): what a cluster's worker
// count costs (cluster2 bounds Config.MaxWorkers by it).
func (em *Emitter) SlotBytes() int64 {
	c := em.opts.RingSize
	if st := em.st.Load(); st != nil {
		c = st.ringCap
	}
	return 2 * ring.Size(c)
}

// MaxFrame returns the largest encoded event this emitter can send: a
// quarter of the ring size.
func (em *Emitter) MaxFrame() int {
	if st := em.st.Load(); st != nil {
		return st.ringCap / 4
	}
	return em.opts.RingSize / 4
}

func (st *state) close() {
	st.closeOnce.Do(func() {
		st.armMu.Lock()
		defer st.armMu.Unlock()
		for _, l := range st.links() {
			st.teardown(l)
		}
	})
}

// ringSpin is the ring's own busy re-check count before a futex sleep: the
// reader has already polled for Options.Spin, yielding, before it calls Read.
const ringSpin = 64

// readLoop reads the link's incoming ring until the peer dies or the link is
// torn down, then delivers what is left.
//
// Why it polls and yields, then parks: a futex sleep keeps the OS thread and
// its P until the runtime's sysmon takes the P back (20 µs to 10 ms). A
// handler goroutine that the reader just made runnable sat in that P's run
// queue meanwhile (a ping-pong between processes measured 120 µs per round
// trip that way), and in a worker with one P every goroutine of the process
// waited: under wrk the 2-worker demo's p99 latency was 2.4× one process's.
// So the reader polls with runtime.Gosched between polls for Options.Spin,
// then the ring parks it (ring.Options.Park: time.Sleep, no P held) instead
// of sleeping on the futex; an event to a quiet process waits up to about a
// millisecond.
func (st *state) readLoop(l *link) {
	defer close(l.done)
	spin := st.em.opts.Spin
	for {
		var err error
		if spin > 0 {
			var got bool
			if got, err = st.poll(l, spin); got {
				continue
			}
		} else if l.in.Stats().Records != 0 {
			runtime.Gosched() // let the handlers of the last batch run before Read may block this P
		}
		if err == nil {
			_, err = l.in.Read(l.ctx, l.onRecord, 256)
		}
		if err == nil {
			continue
		}
		switch {
		case errors.Is(err, ring.ErrPeerDead):
			l.markDead()
			st.log.Debug("peer died", "peer", l.pid, "slot", l.slot)
		case l.ctx.Err() != nil:
		default:
			l.markDead()
			st.log.Error("ring read", "peer", l.pid, "slot", l.slot, "err", err)
			return
		}
		// The peer is gone (or we stop listening to it): deliver what it
		// committed, past a record it may have died writing.
		if _, err := l.inRing.Unblock(context.Background()); err != nil {
			st.log.Error("ring unblock", "peer", l.pid, "err", err)
		}
		for {
			n, err := l.in.Poll(l.onRecord, 256)
			if n == 0 || err != nil {
				return
			}
		}
	}
}

// poll polls the link's ring, yielding between empty polls, until a record
// comes (true) or spin passed since the call.
func (st *state) poll(l *link, spin time.Duration) (bool, error) {
	var start time.Time
	for i := 0; ; i++ {
		n, err := l.in.Poll(l.onRecord, 256)
		if n > 0 || err != nil {
			runtime.Gosched() // the handlers of this batch run now, on this P
			return n > 0, err
		}
		if i&63 == 0 {
			if i == 0 {
				start = time.Now()
			} else if time.Since(start) > spin || l.ctx.Err() != nil {
				return false, nil
			}
		}
		runtime.Gosched()
	}
}

// fromMaster handles a record a worker read from the master: an event (of
// this host, or of another host the master took from the backplane), or
// the answer to an emit to AllHosts.
func (st *state) fromMaster(l *link, typ uint32, b []byte) {
	if typ == recordAck {
		st.em.stats.received.Add(1)
		st.answer(l, b)
		return
	}
	f, ok := st.parse(l, typ, b)
	if !ok {
		return
	}
	host := st.host
	if f.host != nil {
		host = string(f.host)
	}
	st.em.dispatch(l, int(f.from), host, st.em.listenersOf(f.name), f.args, l.slab.copy)
}

func (st *state) parse(l *link, typ uint32, b []byte) (frame, bool) {
	st.em.stats.received.Add(1)
	if typ != recordEvent {
		st.em.stats.dropped.Add(1)
		st.log.Error("unknown record type", "peer", l.pid, "type", typ)
		return frame{}, false
	}
	f, err := parseFrame(b)
	if err != nil {
		st.em.stats.dropped.Add(1)
		st.log.Error("bad frame", "peer", l.pid, "err", err)
		return frame{}, false
	}
	return f, true
}

// fromWorker handles a record the master read from worker l: it delivers
// it to the master's listeners and routes it to other workers.
func (st *state) fromWorker(l *link, typ uint32, b []byte) {
	if typ == recordHosts {
		st.em.stats.received.Add(1)
		st.fromWorkerHosts(l, b)
		return
	}
	f, ok := st.parse(l, typ, b)
	if !ok {
		return
	}
	st.routeFrame(l, f, b)
}

// routeFrame delivers frame f (encoded as b) of worker l to the master's
// listeners and routes it to the other workers its flags and pids name.
func (st *state) routeFrame(l *link, f frame, b []byte) {
	toMaster := f.flags&flagMaster != 0
	workers := f.flags&flagWorkers != 0
	for i := range f.npids() {
		if f.pid(i) == st.em.pid {
			toMaster = true
		}
	}
	if toMaster {
		st.em.dispatch(l, int(f.from), st.host, st.em.listenersOf(f.name), f.args, l.slab.copy)
	}
	if workers {
		for _, x := range st.links() {
			if x != l {
				st.route(l, x, b)
			}
		}
	}
	for i := range f.npids() {
		pid := f.pid(i)
		if pid == st.em.pid || pid == l.pid {
			continue
		}
		x := st.linkOf(pid)
		switch {
		case x == nil:
			st.em.stats.dropped.Add(1)
		case !workers:
			st.route(l, x, b)
		}
	}
}

// route forwards a worker's frame to another worker, waiting at most
// SendTimeout for room; what cannot be written is dropped, counted and
// logged (the sender is not there to be told).
func (st *state) route(from, to *link, b []byte) {
	sent, err := to.send(from, st.em.opts.SendTimeout, recordEvent, b)
	switch {
	case err != nil:
		st.em.stats.dropped.Add(1)
		st.log.Warn("route dropped an event", "from", from.pid, "to", to.pid, "err", err)
	case sent:
		st.em.stats.routed.Add(1)
		st.em.stats.sent.Add(1)
	default:
		st.em.stats.dropped.Add(1)
	}
}

// send writes record b of type typ (a frame for recordEvent) to the link's
// ring. It reports false (no error) when
// the peer is dead or the link torn down: the caller counts a drop. A full
// ring waits under w's context; errors wrap ring.ErrFull and the context's
// error.
func (l *link) send(w waiter, timeout time.Duration, typ uint32, b []byte) (bool, error) {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.out == nil || l.dead() {
		return false, nil
	}
	err := l.out.TryWrite(typ, b)
	if errors.Is(err, ring.ErrFull) {
		ctx := w.waitCtx()
		if _, isLink := w.(*link); isLink && timeout > 0 { // routing: the reader's life, bounded
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		err = l.out.Write(ctx, typ, b)
	}
	if errors.Is(err, ring.ErrPeerDead) {
		l.markDead()
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("emitter: send to %d: %w", l.pid, err)
	}
	return true, nil
}

// send writes an event emitted by this process to its remote targets.
func (st *state) send(sb *sendBuf, r *route, name string, errs []error) []error {
	if st.role == RoleWorker {
		if !r.master && !r.workers && len(r.pids) == 0 {
			return errs
		}
		var flags uint8
		if r.master {
			flags |= flagMaster
		}
		if r.workers {
			flags |= flagWorkers
		}
		if r.hosts { // the master routes it here, publishes it, and answers
			seq := st.seq.Add(1)
			sb.frame = binary.LittleEndian.AppendUint64(sb.frame[:0], seq)
			sb.frame = appendFrame(sb.frame, uint32(st.em.pid), flags, r.pids, "", name, sb.args)
			if err := st.sendHosts(sb, st.linkOf(st.masterPid), seq); err != nil {
				errs = append(errs, fmt.Errorf("emitter: emit %q to every host: %w", name, err))
			}
			return errs
		}
		sb.frame = appendFrame(sb.frame[:0], uint32(st.em.pid), flags, r.pids, "", name, sb.args)
		return st.sendTo(sb, st.linkOf(st.masterPid), errs)
	}
	if !r.workers && len(r.pids) == 0 {
		return errs
	}
	sb.frame = appendFrame(sb.frame[:0], uint32(st.em.pid), 0, nil, "", name, sb.args)
	if r.workers {
		for _, l := range st.links() {
			errs = st.sendTo(sb, l, errs)
		}
	}
	for _, pid := range r.pids {
		l := st.linkOf(pid)
		if l == nil {
			st.em.stats.dropped.Add(1)
			continue
		}
		if !r.workers {
			errs = st.sendTo(sb, l, errs)
		}
	}
	return errs
}

func (st *state) sendTo(sb *sendBuf, l *link, errs []error) []error {
	if l == nil {
		st.em.stats.dropped.Add(1)
		return errs
	}
	sent, err := l.send(sb, 0, recordEvent, sb.frame)
	switch {
	case err != nil:
		errs = append(errs, err)
	case sent:
		st.em.stats.sent.Add(1)
	default:
		st.em.stats.dropped.Add(1)
	}
	return errs
}
