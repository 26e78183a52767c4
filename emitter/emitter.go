package emitter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/nocopy"
)

// Defaults of Options.
const (
	DefaultRingSize    = 256 << 10
	DefaultQueueLen    = 4096
	DefaultSendTimeout = 10 * time.Second
	DefaultSpin        = time.Millisecond
	DefaultPeerCheck   = 50 * time.Millisecond
)

// Options configures an Emitter. The zero value takes every default; a nil
// *Options means the zero value.
type Options struct {
	// RingSize is the data capacity, in bytes, of each ring (one per
	// direction per worker slot): a power of two from 4 KiB to 64 MiB.
	// An event frame may take up to a quarter of it (MaxFrame). Only the
	// master's value counts: it lays out the region, and workers read the
	// size from there. 0 means DefaultRingSize (256 KiB: 64 KiB frames).
	RingSize int

	// Slots is the number of process-table slots the master's region
	// describes (worker slots at or beyond it cannot attach). Rings are
	// allocated only for slots that are used. 0 means every slot of the
	// arena. Master only.
	Slots int

	// QueueLen is how many events may wait for one listener's handler;
	// a delivery to a full queue waits (bounded like the Emit that
	// caused it, or by the ring reader's life). 0 means DefaultQueueLen.
	QueueLen int

	// SendTimeout bounds how long Emit (and the master, routing an event
	// between workers) waits for room in a full ring or queue. EmitContext
	// is bounded by its context instead. 0 means DefaultSendTimeout;
	// negative means no bound.
	SendTimeout time.Duration

	// Spin is how long a ring reader keeps polling its ring after the last
	// record, yielding to the process's other goroutines (the handlers)
	// between polls, before it sleeps on the futex: longer is lower latency
	// after a quiet spell, at the cost of CPU (each reader burns up to Spin
	// of one core after the last event of a burst). 0 means DefaultSpin
	// (1 ms: it keeps both readers of a conversation awake between
	// messages; once a reader sleeps, a wake-up costs far more, see
	// docs/emitter.md); negative never spins.
	Spin time.Duration

	// PeerCheck is how often a sleeping ring reader checks that the other
	// process lives (and so how soon a dead one is noticed when idle). 0
	// means DefaultPeerCheck.
	PeerCheck time.Duration

	// Logger receives routing and reader errors. nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) withDefaults() (Options, error) {
	var v Options
	if o != nil {
		v = *o
	}
	if v.RingSize == 0 {
		v.RingSize = DefaultRingSize
	}
	if v.RingSize < 4<<10 || v.RingSize > 64<<20 || v.RingSize&(v.RingSize-1) != 0 {
		return v, fmt.Errorf("emitter: %w: RingSize %d is not a power of two in [4 KiB, 64 MiB]", ErrInvalidConfig, v.RingSize)
	}
	if v.Slots < 0 {
		return v, fmt.Errorf("emitter: %w: Slots %d", ErrInvalidConfig, v.Slots)
	}
	if v.QueueLen == 0 {
		v.QueueLen = DefaultQueueLen
	}
	if v.QueueLen < 0 {
		return v, fmt.Errorf("emitter: %w: QueueLen %d", ErrInvalidConfig, v.QueueLen)
	}
	if v.SendTimeout == 0 {
		v.SendTimeout = DefaultSendTimeout
	}
	if v.Spin == 0 {
		v.Spin = DefaultSpin
	}
	if v.PeerCheck <= 0 {
		v.PeerCheck = DefaultPeerCheck
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	return v, nil
}

// String returns a one-line description of the options.
func (o Options) String() string {
	return fmt.Sprintf("emitter.Options{RingSize: %d, Slots: %d, QueueLen: %d, SendTimeout: %v, Spin: %v, PeerCheck: %v}",
		o.RingSize, o.Slots, o.QueueLen, o.SendTimeout, o.Spin, o.PeerCheck)
}

// Event is one event as a handler receives it.
type Event struct {
	// From is the pid of the emitting process, on the host Host.
	From int
	// Host is the id of the host the event was emitted on (Emitter.Host of
	// the emitting process): this host's for a local event, another's for
	// one that came through the backplane (an event to AllHosts).
	Host string
	// Name is the event's name.
	Name string
	// Args is the JSON array of the emitted arguments ("[]" for none). It
	// is shared by every listener of the event: read it, do not modify it.
	Args json.RawMessage
}

// Decode decodes the event's arguments, in order, into dst (pointers, as for
// json.Unmarshal). Arguments beyond len(dst) are ignored; missing ones leave
// their destination untouched. Errors wrap ErrArgs.
func (e Event) Decode(dst ...any) error {
	var raw []json.RawMessage
	if len(bytes.TrimSpace(e.Args)) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Args, &raw); err != nil {
		return fmt.Errorf("emitter: event %q: %w: %w", e.Name, ErrArgs, err)
	}
	for i, d := range dst {
		if i >= len(raw) {
			break
		}
		if err := json.Unmarshal(raw[i], d); err != nil {
			return fmt.Errorf("emitter: event %q: argument %d: %w: %w", e.Name, i, ErrArgs, err)
		}
	}
	return nil
}

// Arg decodes the event's argument i into a T. A missing argument or one
// that does not decode into T returns an error wrapping ErrArgs.
func Arg[T any](e Event, i int) (T, error) {
	var raw []json.RawMessage
	var v T
	if err := json.Unmarshal(e.Args, &raw); err != nil {
		return v, fmt.Errorf("emitter: event %q: %w: %w", e.Name, ErrArgs, err)
	}
	if i < 0 || i >= len(raw) {
		return v, fmt.Errorf("emitter: event %q: %w: no argument %d of %d", e.Name, ErrArgs, i, len(raw))
	}
	if err := json.Unmarshal(raw[i], &v); err != nil {
		return v, fmt.Errorf("emitter: event %q: argument %d: %w: %w", e.Name, i, ErrArgs, err)
	}
	return v, nil
}

// Stats counts what an emitter did since it was made. Every counter only
// grows.
type Stats struct {
	Emitted  uint64 // Emit calls that returned nil
	Sent     uint64 // frames written to rings (one per receiving ring)
	Received uint64 // frames read from rings
	Routed   uint64 // frames the master forwarded from one worker to another
	Local    uint64 // events delivered to this process's listeners (one per event, not per listener)
	Dropped  uint64 // targets dropped: unknown or dead pid, no cluster, or a routed frame that could not be written

	// Events across hosts (AllHosts; see Backplane).
	Published     uint64 // master (or unattached emitter): events published to the backplane, its own and its workers'
	PublishFailed uint64 // events to AllHosts not published (no backplane, the backplane's error, too large): in the master every one, its workers' too; in a worker its own
	FromHosts     uint64 // master: events of other hosts received from the backplane
	Echoes        uint64 // master: this host's own events the backplane brought back, dropped by origin
}

type counters struct {
	emitted, sent, received, routed, local, dropped atomic.Uint64

	published, publishFailed, fromHosts, echoes atomic.Uint64
}

// Emitter is one process's end of the cluster's event bus. New makes one
// that delivers only within its process; Attach (or Open) connects it to a
// cluster's arena as the master or a worker. Its zero value is not usable;
// it must not be copied; it is safe for concurrent use by goroutines.
// Handlers run on one goroutine per listener, in the order events reached
// this process, so a slow handler delays only its own listener (until its
// queue of Options.QueueLen events fills).
type Emitter struct {
	_    nocopy.NoCopy
	pid  int
	opts Options

	mu     sync.RWMutex
	byName map[string][]*Listener // slices are never modified in place: readers take them under RLock and use them after
	closed bool

	st    atomic.Pointer[state] // nil until attached
	stats counters

	hostName atomic.Pointer[string]    // SetHost's name; nil: the default id
	host     string                    // the host id while unattached (defaultHost at New)
	bp       atomic.Pointer[backplane] // SetBackplane's; nil: none
}

// New returns an emitter that is not part of a cluster yet: it delivers to
// its own process (Self, Master and its own pid name it; Workers names
// nobody) until Attach connects it. opts may be nil.
func New(opts *Options) (*Emitter, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	pid := os.Getpid()
	return &Emitter{pid: pid, opts: o, byName: map[string][]*Listener{}, host: defaultHost(pid, time.Now())}, nil
}

func mustNew() *Emitter {
	em, err := New(nil)
	if err != nil {
		panic(err)
	}
	return em
}

// Pid returns the pid of the emitter's process.
func (em *Emitter) Pid() int { return em.pid }

// Stats returns the emitter's counters.
func (em *Emitter) Stats() Stats {
	c := &em.stats
	return Stats{Emitted: c.emitted.Load(), Sent: c.sent.Load(), Received: c.received.Load(),
		Routed: c.routed.Load(), Local: c.local.Load(), Dropped: c.dropped.Load(),
		Published: c.published.Load(), PublishFailed: c.publishFailed.Load(),
		FromHosts: c.fromHosts.Load(), Echoes: c.echoes.Load()}
}

// On registers fn for every event called name received by this process, and
// returns the handle that Off takes. fn runs on the listener's own goroutine,
// one event at a time, in arrival order. Registering the same fn twice makes
// two listeners.
func (em *Emitter) On(name string, fn func(Event)) *Listener { return em.add(name, fn, false) }

// Once is On for the next event called name only: fn runs at most once, even
// when events arrive concurrently.
func (em *Emitter) Once(name string, fn func(Event)) *Listener { return em.add(name, fn, true) }

func (em *Emitter) add(name string, fn func(Event), once bool) *Listener {
	if fn == nil {
		panic("emitter: nil handler")
	}
	l := newListener(em, name, fn, once)
	em.mu.Lock()
	if em.closed {
		em.mu.Unlock()
		l.stop()
		return l
	}
	old := em.byName[name]
	ls := make([]*Listener, len(old), len(old)+1)
	copy(ls, old)
	em.byName[name] = append(ls, l)
	em.mu.Unlock()
	go l.run()
	return l
}

// Off removes a listener. After Off returns no new call of its handler
// starts (a call already running finishes; events still queued for it are
// dropped). Off of a removed listener, or nil, does nothing. A handler may
// call Off on its own listener.
func (em *Emitter) Off(l *Listener) {
	if l == nil {
		return
	}
	l.stop()
	em.unlist(l)
}

func (em *Emitter) unlist(l *Listener) {
	em.mu.Lock()
	defer em.mu.Unlock()
	old := em.byName[l.name]
	i := -1
	for j, x := range old {
		if x == l {
			i = j
			break
		}
	}
	if i < 0 {
		return
	}
	if len(old) == 1 {
		delete(em.byName, l.name)
		return
	}
	ls := make([]*Listener, 0, len(old)-1)
	ls = append(append(ls, old[:i]...), old[i+1:]...)
	em.byName[l.name] = ls
}

// RemoveAll removes every listener of the event called name, as Off does.
func (em *Emitter) RemoveAll(name string) {
	em.mu.Lock()
	ls := em.byName[name]
	delete(em.byName, name)
	em.mu.Unlock()
	for _, l := range ls {
		l.stop()
	}
}

// Listeners returns the number of listeners of the event called name.
func (em *Emitter) Listeners(name string) int {
	em.mu.RLock()
	defer em.mu.RUnlock()
	return len(em.byName[name])
}

// byNameSnapshot returns the listeners of name. The slice is never
// modified: it may be used after the lock is released.
func (em *Emitter) byNameSnapshot(name string) []*Listener {
	em.mu.RLock()
	ls := em.byName[name]
	em.mu.RUnlock()
	return ls
}

// listenersOf is byNameSnapshot for a name in ring memory (no allocation).
func (em *Emitter) listenersOf(name []byte) []*Listener {
	em.mu.RLock()
	ls := em.byName[string(name)]
	em.mu.RUnlock()
	return ls
}

// dispatch hands an event to this process's listeners; a full listener
// queue waits under w's context. args is the ring's or a pooled buffer's
// memory: alloc copies it, once, for the listeners to keep.
func (em *Emitter) dispatch(w waiter, from int, host string, ls []*Listener, args []byte, alloc func([]byte) []byte) error {
	em.stats.local.Add(1)
	if len(ls) == 0 {
		return nil
	}
	var kept json.RawMessage
	for _, l := range ls {
		if l.off.Load() || (l.once && !l.fired.CompareAndSwap(false, true)) {
			continue
		}
		if kept == nil {
			kept = alloc(args)
		}
		err := l.push(w, Event{From: from, Host: host, Name: l.name, Args: kept})
		if l.once {
			em.unlist(l)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func heapCopy(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// slab copies arguments out of ring memory into large shared chunks: one
// allocation per slabSize bytes of events instead of one per event. A chunk
// lives as long as any event that points into it.
type slab struct{ buf []byte }

const slabSize = 32 << 10

func (s *slab) copy(b []byte) []byte {
	if len(b) > cap(s.buf)-len(s.buf) {
		s.buf = make([]byte, 0, max(slabSize, len(b)))
	}
	n := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[n:len(s.buf):len(s.buf)]
}

// Close detaches the emitter from the cluster (its ring readers stop) and
// removes every listener. Emit returns ErrClosed afterwards.
func (em *Emitter) Close() error {
	em.mu.Lock()
	if em.closed {
		em.mu.Unlock()
		return nil
	}
	em.closed = true
	all := em.byName
	em.byName = map[string][]*Listener{}
	em.mu.Unlock()
	for _, ls := range all {
		for _, l := range ls {
			l.stop()
		}
	}
	if st := em.st.Load(); st != nil {
		st.close()
	}
	return nil
}

// Emit sends the event called name with args (JSON-encodable values) to the
// default targets: from the master, itself and every worker; from a worker,
// itself and the master. It waits at most Options.SendTimeout for room in a
// full ring or listener queue, then returns an error wrapping ring.ErrFull
// (or ErrQueueFull) and context.DeadlineExceeded; nothing is dropped
// silently. Unknown or dead targets are dropped and counted (Stats.Dropped),
// not errors. args may be reused once Emit returns.
//
// In the terminology of the Go memory model, Emit synchronizes before the
// call of every handler, in any process, that receives the event; events
// from one process to another are received in the order they were emitted.
func (em *Emitter) Emit(name string, args ...any) error {
	return em.emit(bound{}, nil, name, args)
}

// EmitContext is Emit waiting at most until ctx ends instead of
// Options.SendTimeout.
func (em *Emitter) EmitContext(ctx context.Context, name string, args ...any) error {
	return em.emit(bound{ctx}, nil, name, args)
}

// Sender emits to chosen targets; see To. It is a small value: copy it
// freely. It is safe for concurrent use.
type Sender struct {
	em      *Emitter
	targets []Target
}

// To returns a Sender whose Emit goes to targets instead of the defaults.
// No targets means nobody (as in the Node original: an empty target list is
// not the default).
func (em *Emitter) To(targets ...Target) Sender {
	if targets == nil {
		targets = []Target{}
	}
	return Sender{em: em, targets: targets}
}

// Emit is Emitter.Emit to the Sender's targets.
func (s Sender) Emit(name string, args ...any) error {
	return s.em.emit(bound{}, s.targets, name, args)
}

// EmitContext is Emitter.EmitContext to the Sender's targets.
func (s Sender) EmitContext(ctx context.Context, name string, args ...any) error {
	return s.em.emit(bound{ctx}, s.targets, name, args)
}

// waiter gives the context a blocked send or delivery waits under. It is
// asked only when a ring or queue is full, so that the common case makes no
// context (and no timer).
type waiter interface {
	waitCtx() context.Context
}

// sendBuf is the reusable scratch of one Emit.
type sendBuf struct {
	args  []byte
	frame []byte
	pids  []int
	enc   *json.Encoder

	base    context.Context // EmitContext's context; nil for Emit
	timeout time.Duration   // Emit's bound
	bounded context.Context
	cancel  context.CancelFunc
}

func (sb *sendBuf) waitCtx() context.Context {
	if sb.bounded == nil {
		switch {
		case sb.base != nil:
			sb.bounded = sb.base
		case sb.timeout > 0:
			sb.bounded, sb.cancel = context.WithTimeout(context.Background(), sb.timeout)
		default:
			sb.bounded = context.Background()
		}
	}
	return sb.bounded
}

func (sb *sendBuf) release() {
	if sb.cancel != nil {
		sb.cancel()
	}
	sb.base, sb.bounded, sb.cancel = nil, nil, nil
	if cap(sb.args) > 1<<20 || cap(sb.frame) > 1<<20 {
		return // do not keep huge buffers
	}
	sendBufs.Put(sb)
}

type appendWriter struct{ b *[]byte }

func (w appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

var sendBufs = sync.Pool{New: func() any {
	sb := &sendBuf{}
	sb.enc = json.NewEncoder(appendWriter{&sb.args})
	sb.enc.SetEscapeHTML(false)
	return sb
}}

// encodeArgs writes args as a JSON array into sb.args.
func (sb *sendBuf) encodeArgs(args []any) error {
	sb.args = append(sb.args[:0], '[')
	for i, a := range args {
		if i > 0 {
			sb.args = append(sb.args, ',')
		}
		if raw, ok := a.(json.RawMessage); ok {
			if !json.Valid(raw) {
				return fmt.Errorf("%w: argument %d: invalid json.RawMessage", ErrArgs, i)
			}
			sb.args = append(sb.args, raw...)
			continue
		}
		if err := sb.enc.Encode(a); err != nil {
			return fmt.Errorf("%w: argument %d: %w", ErrArgs, i, err)
		}
		sb.args = sb.args[:len(sb.args)-1] // Encode's newline
	}
	sb.args = append(sb.args, ']')
	return nil
}

// bound is how long an emit may wait for room: until ctx ends, or (the zero
// value) Options.SendTimeout.
type bound struct{ ctx context.Context }

func (em *Emitter) emit(b bound, targets []Target, name string, args []any) error {
	if len(name) == 0 || len(name) > MaxName {
		return fmt.Errorf("emitter: emit %.40q: %w: %d bytes (1 to %d)", name, ErrBadName, len(name), MaxName)
	}
	em.mu.RLock()
	closed := em.closed
	em.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	sb := sendBufs.Get().(*sendBuf)
	defer sb.release()
	sb.base, sb.timeout = b.ctx, em.opts.SendTimeout
	if err := sb.encodeArgs(args); err != nil {
		return fmt.Errorf("emitter: emit %q: %w", name, err)
	}
	st := em.st.Load()
	r := em.resolve(st, targets, sb.pids[:0])
	sb.pids = r.pids[:0]
	host := em.hostOf(st)
	n := frameSize(len(r.pids), 0, len(name), len(sb.args))
	if r.hosts {
		n = max(n, frameSize(0, len(host), len(name), len(sb.args)))
	}
	if n > em.MaxFrame() || len(r.pids) > MaxPids {
		if r.hosts {
			em.stats.publishFailed.Add(1)
		}
		return fmt.Errorf("emitter: emit %q: %w: %d-byte frame, max %d", name, ErrTooLarge, n, em.MaxFrame())
	}
	var errs []error
	if r.self {
		if err := em.dispatch(sb, em.pid, host, em.byNameSnapshot(name), sb.args, heapCopy); err != nil {
			errs = append(errs, err)
		}
	}
	if st != nil {
		errs = st.send(sb, &r, name, errs)
	} else {
		em.stats.dropped.Add(uint64(len(r.pids))) // no cluster: Workers is nobody, a pid is unknown
	}
	if r.hosts && (st == nil || st.role != RoleWorker) { // a worker's master publishes (st.send)
		var err error
		sb.frame, err = em.publish(sb.waitCtx(), sb.frame[:0], uint32(em.pid), host, name, sb.args)
		if err != nil {
			errs = append(errs, fmt.Errorf("emitter: emit %q to every host: %w", name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	em.stats.emitted.Add(1)
	return nil
}

// resolve turns targets (nil: the defaults) into a route for st's role.
func (em *Emitter) resolve(st *state, targets []Target, pids []int) route {
	r := route{pids: pids}
	worker := st != nil && st.role == RoleWorker
	masterPid := em.pid
	if worker {
		masterPid = st.masterPid
	}
	if targets == nil {
		r.self = true
		if worker {
			r.master = true
		} else {
			r.workers = true
		}
		return r
	}
	for _, t := range targets {
		switch t.kind {
		case kindSelf:
			r.self = true
		case kindMaster:
			if worker {
				r.master = true
			} else {
				r.self = true
			}
		case kindWorkers:
			r.workers = true
			if worker {
				r.self = true
			}
		case kindAllHosts:
			r.self, r.workers, r.hosts = true, true, true
			if worker {
				r.master = true
			}
		default:
			switch {
			case t.pid == em.pid:
				r.self = true
			case worker && t.pid == masterPid:
				r.master = true
			default:
				r.addPid(t.pid)
			}
		}
	}
	return r
}
