package worker

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm"
	"golang.org/x/sys/unix"
)

// RoleWorker is the role a worker stores in its slot of the process table
// (internal/proc defines every role's value).
const RoleWorker = uint32(proc.RoleWorker)

// Defaults of Config. They are the cluster's only copy: master.Config and
// cluster2.Config, whose fields of the same names the master applies too,
// default to them.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultReplaceTimeout    = 60 * time.Second
	DefaultStopTimeout       = 60 * time.Second
	// masterDeathDrain bounds the drain of a worker whose master died: it
	// must be gone within a second.
	masterDeathDrain = 700 * time.Millisecond
)

// Config configures Run. Zero fields take their defaults.
type Config struct {
	// Handler serves the worker's requests with net/http, the default
	// server. Exactly one of Handler and Serve is set.
	Handler http.Handler

	// Serve, when set instead of Handler, runs another server (gRPC,
	// fasthttp, a custom protocol) as the worker's: it serves ln until ln is
	// closed, then returns (any error then is ignored). ctx is cancelled
	// when the worker closes ln. Serve is called on the private address for
	// WarmUp (the listener closed, its connections too, once WarmUp
	// returned), then on the shared socket, and again after each resume (a
	// pause closes the listener; the connections it accepted stay with the
	// server): on the same server, one call at a time. A Serve that returns
	// while its listener is open stops the worker with ErrServe (the master
	// replaces it). Connections are counted in the heartbeat; requests only
	// when the server calls CountRequest. Server, NewServer and ConfigureApp
	// are net/http's: with Serve, NewServer and ConfigureApp must be nil.
	// See docs/runtime.md, "Any server".
	Serve func(ctx context.Context, ln net.Listener) error

	// Drain, required with Serve, drains the server in the worker's drain,
	// once the worker's listener is closed and Serve returned: it finishes
	// the requests in flight on the connections Serve accepted and closes
	// them, within ctx's deadline (the master's drain deadline, or
	// StopTimeout), e.g. grpc.Server.GracefulStop (and Stop when ctx ends),
	// fasthttp.Server.ShutdownWithContext. Once it returned the worker waits
	// until the deadline for the connections to be closed, then closes the
	// rest.
	Drain func(ctx context.Context) error

	// NewServer makes the http.Server that serves Handler (the place to set
	// TLSConfig, timeouts, ErrorLog). Its Handler field is used as given; a
	// server with TLSConfig certificates is served with TLS. Server's limits
	// fill the fields it leaves zero. Default: a plain server.
	NewServer func(http.Handler) *http.Server

	// Server holds the limits against idle, slow and oversized clients
	// (IdleTimeout 75 s, ReadHeaderTimeout 10 s, a body read deadline of
	// 60 s, MaxHeaderBytes 1 MiB, a rate-limited error log) and the drain's
	// grace for idle keep-alive connections; see ServerConfig.
	Server ServerConfig

	// Attach, when set, runs once the arena is mapped and the slot joined,
	// before ConfigureApp, warm-up and serving: the place to attach what
	// lives in the arena (the shared cache), so that no request, warm-up
	// included, runs before it. An error stops the worker.
	Attach func(ctx context.Context, a *shm.Arena, p *shm.Proc) error

	// ConfigureApp, when set, runs once before warm-up and may replace the
	// handler (add middleware, open resources). An error stops the worker.
	ConfigureApp func(ctx context.Context, h http.Handler) (http.Handler, error)

	// WarmUp, when set, runs against the worker's own handler served on a
	// private loopback address (addr, "127.0.0.1:port") before the worker
	// joins the shared socket. An error or a timeout is a warm-up failure:
	// reported to the master; the worker does not listen. The private
	// listener serves plain HTTP even when the server serves TLS.
	WarmUp func(ctx context.Context, addr string) error

	// ReplaceTimeout bounds WarmUp. It is the cluster's ReplaceTimeout
	// (master.Config.ReplaceTimeout, cluster2.Config.ReplaceTimeout): the
	// master gives up on a worker not listening within it, warm-up
	// included. Default 60 s.
	ReplaceTimeout time.Duration

	// HeartbeatInterval is the time between heartbeats. Default 5 s.
	HeartbeatInterval time.Duration

	// StopTimeout bounds a drain the worker starts itself (SIGTERM,
	// Shutdown without a deadline); a drain the master asks for uses the
	// master's deadline. It is the cluster's StopTimeout
	// (master.Config.StopTimeout, cluster2.Config.StopTimeout). Default
	// 60 s.
	StopTimeout time.Duration

	// Version is the application's version, stored with the build's VCS
	// revision and Go version in the worker's control block, where the
	// master reads it (master.WorkerInfo.Build). Default
	// build.DefaultVersion(): the module's version, the short revision, or
	// "dev".
	Version string

	// Logger receives the worker's log lines. Default slog.Default().
	Logger *slog.Logger
}

// Worker is the worker side of a running cluster: one process serving on the
// shared socket. Its methods are safe for concurrent use. It must not be
// copied.
type Worker struct {
	_       nocopy.NoCopy
	cfg     Config
	log     *slog.Logger
	slot    int
	arena   *shm.Arena
	self    *shm.Proc
	block   *proc.Block
	blocks  []proc.Block // every slot's, for the accept balance
	bal     *balancer    // nil: no balance
	lnf     *os.File     // fd 3, kept open for resume
	srv     *http.Server
	tls     bool
	c       counters
	limit   uint64 // the master's request limit for this process (0: none), read when it joins
	start   time.Time
	hungLog *log.Logger // RequestHung's, rate-limited
	col     *collector
	hbMu    sync.Mutex // serializes heartbeats (one seqlock writer)

	closing atomic.Bool // paused or draining: responses say "Connection: close"
	idle    idleConns   // connections waiting for a request, for pause and drain

	mu      sync.Mutex
	ln      net.Listener // nil while paused or drained
	serving sync.WaitGroup
	stopped bool
	served  []*serveListener // Config.Serve's shared listeners, one per listen (connections outlive a pause)

	stopOnce sync.Once
	stopCh   chan stopReq    // the control loop's inbox for stops
	stopping context.Context // cancelled by the first stop request (ends a warm-up)
	stopNow  context.CancelFunc
	done     chan struct{}
	err      error // why it stopped; set before done closes
}

type stopReq struct {
	deadline time.Duration
	err      error
}

// self is what the environment said about this process when the program
// started (internal/proc reads it then, before Run removes the protocol's
// variables so that programs a worker runs are not mistaken for workers):
// the answer of IsWorker and Run, however often and whenever they are
// called.
var self, selfErr = proc.Self()

// IsWorker reports whether this process was started by a cluster2 master. It
// tells the truth at any time, before Run and after it (Run removes the
// environment variables it is read from: it was read at start).
func IsWorker() bool { return self.Role == proc.RoleWorker }

// Run starts the worker side in a process a cluster2 master re-executed: it
// maps the arena, joins its slot, warms up on a private loopback address,
// joins the shared socket, and returns once it accepts there. From then on
// the worker heartbeats, obeys the master (pause, resume, drain), drains on
// SIGTERM, and drains and exits the process within a second when the master
// dies. SIGINT is ignored: the master, which gets it too from a terminal,
// orchestrates the stop.
func Run(ctx context.Context, cfg Config) (*Worker, error) {
	slot := self.Slot
	if selfErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotWorker, selfErr)
	}
	if self.Role != proc.RoleWorker {
		return nil, ErrNotWorker
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReplaceTimeout <= 0 {
		cfg.ReplaceTimeout = DefaultReplaceTimeout
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Server = cfg.Server.WithDefaults()
	w := &Worker{cfg: cfg, slot: slot, start: time.Now(), stopCh: make(chan stopReq, 4), done: make(chan struct{})}
	w.stopping, w.stopNow = context.WithCancel(context.Background())
	w.log = cfg.Logger.With("role", "worker", "pid", os.Getpid(), "slot", slot)
	w.hungLog = NewErrorLog(w.log, time.Second)
	proc.Unsetenv()
	if err := w.attach(ctx); err != nil {
		w.close()
		return nil, err
	}
	if err := w.begin(ctx); err != nil {
		if !errors.Is(err, ErrStopped) && w.block.Reason() == "" {
			// The master reads it when it reaps this process: the reason of
			// a start failure must not be only in this process's log.
			w.block.SetReason(err.Error())
		}
		w.close()
		return nil, err
	}
	return w, nil
}

// attach maps the arena, joins the slot and finds the control block.
func (w *Worker) attach(ctx context.Context) error {
	// The inherited descriptors are not for the worker's own children: a
	// grandchild holding the socket or the arena would outlive the cluster.
	for _, fd := range []int{proc.ListenerFD, proc.ArenaFD, proc.DeathFD} {
		unix.CloseOnExec(fd)
	}
	a, err := shm.Open(os.NewFile(proc.ArenaFD, "arena"))
	if err != nil {
		return fmt.Errorf("%w: arena: %w", ErrInherit, err)
	}
	w.arena = a
	if w.self, err = a.JoinSlot(w.slot, RoleWorker); err != nil {
		return fmt.Errorf("worker: join slot %d: %w", w.slot, err)
	}
	blocks, err := proc.Region(ctx, a)
	if err != nil {
		return fmt.Errorf("worker: supervision region: %w", err)
	}
	w.block = &blocks[w.slot]
	w.blocks = blocks
	w.c.totals, w.limit = w.block, w.block.RequestLimit() // the master stored the limit before the spawn
	w.block.SetPid(os.Getpid())
	bi := build.Read(w.cfg.Version, build.Layout{})
	w.block.SetBuild(bi.Version, bi.Revision, bi.GoVersion) // before the first state: the master reads it then
	// os.NewFile keeps the descriptor's mode: Fd and FileListener never switch
	// the shared description to blocking (see internal/proc).
	w.lnf = os.NewFile(proc.ListenerFD, "listener")
	if ok, err := proc.IsNonblock(proc.ListenerFD); err != nil {
		return fmt.Errorf("%w: listener: %w", ErrInherit, err)
	} else if !ok {
		w.log.Warn("shared listener was in blocking mode; switching it back")
		proc.SetNonblock(proc.ListenerFD)
	}
	return nil
}

func (w *Worker) begin(ctx context.Context) error {
	go w.watchMaster()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	signal.Ignore(syscall.SIGINT)
	go func() {
		select {
		case <-sig:
			w.log.Info("SIGTERM: draining")
			w.Stop(w.cfg.StopTimeout)
		case <-w.done:
		}
		signal.Stop(sig)
	}()

	if w.cfg.Attach != nil {
		if err := w.cfg.Attach(ctx, w.arena, w.self); err != nil {
			return fmt.Errorf("worker: Attach: %w", err)
		}
	}
	h := w.cfg.Handler // nil with Config.Serve
	if w.cfg.ConfigureApp != nil {
		var err error
		if h, err = w.cfg.ConfigureApp(ctx, h); err != nil {
			return fmt.Errorf("worker: ConfigureApp: %w", err)
		}
	}
	w.col = newCollector(os.Getpid(), w.slot, w.start, &w.c)
	go w.heartbeats()

	// The warm-up's requests are not the worker's: only those it serves on
	// the shared socket are counted (heartbeats, MaxRequests).
	err := w.warmUp(ctx, h)
	if w.stopping.Err() != nil {
		// SIGTERM or the master's death during warm-up: never join the socket.
		w.block.SetState(proc.StateStopped)
		return ErrStopped
	}
	if err != nil {
		w.block.SetReason(err.Error()) // before the state: the master reads it on seeing the failure
		w.block.SetState(proc.StateWarmFailed)
		w.log.Error("warm-up failed", "err", err)
		return fmt.Errorf("%w: %w", ErrWarmUp, err)
	}
	w.block.SetState(proc.StateWarmed)
	if w.cfg.Serve != nil {
		// From here CountRequest and RequestHung count: the warm-up's
		// requests are not the worker's, as with Handler.
		running.Store(w)
		if err := w.listen(); err != nil {
			return err
		}
		go w.control()
		return nil
	}

	w.srv = w.newServer(w.instrument(h))
	w.tls = w.srv.TLSConfig != nil && (len(w.srv.TLSConfig.Certificates) > 0 || w.srv.TLSConfig.GetCertificate != nil)
	user := w.srv.ConnState
	w.srv.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			w.c.openConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			w.c.openConns.Add(-1)
		}
		w.idle.track(c, s)
		if user != nil {
			user(c, s)
		}
	}
	if !w.cfg.Server.UnbalancedAccepts {
		w.bal = newBalancer(w.slot, w.blocks, w.arena, listenQueue)
	}
	if err := w.listen(); err != nil {
		return err
	}
	go w.control()
	return nil
}

// newServer makes the server of h: NewServer's, or a plain one, with the
// limits of Config.Server on the fields it left zero, the body read deadline
// unless it has a ReadTimeout of its own, and the drain's "Connection:
// close".
func (w *Worker) newServer(h http.Handler) *http.Server {
	var s *http.Server
	if w.cfg.NewServer != nil {
		s = w.cfg.NewServer(h)
	}
	if s == nil {
		s = &http.Server{}
	}
	if s.Handler == nil {
		s.Handler = h
	}
	w.cfg.Server.Apply(s, w.log)
	if s.ReadTimeout == 0 {
		s.Handler = w.cfg.Server.BodyDeadline(s.Handler)
	}
	s.Handler = w.cfg.Server.RequestDeadline(s.Handler, w.requestHung)
	// Outermost, whatever handler NewServer chose: once the worker drains,
	// HTTP/1 clients are asked to close the connection after the response.
	inner := s.Handler
	s.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.closing.Load() && r.ProtoMajor == 1 {
			rw.Header().Set("Connection", "close")
		}
		inner.ServeHTTP(rw, r)
	})
	return s
}

// warmUp serves h on a private loopback listener while WarmUp runs.
func (w *Worker) warmUp(ctx context.Context, h http.Handler) (err error) {
	w.block.SetState(proc.StateWarming)
	if w.cfg.WarmUp == nil {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("private listener: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, w.cfg.ReplaceTimeout)
	defer cancel()
	var early <-chan error // Config.Serve returned before the warm-up ended
	if w.cfg.Serve != nil {
		var end func(time.Duration) error
		end, early = w.servePrivate(ln)
		defer func() {
			if e := end(w.cfg.ReplaceTimeout); err == nil {
				err = e
			}
		}()
	} else {
		srv := w.newServer(h)
		go srv.Serve(ln)
		defer srv.Close()
	}
	defer context.AfterFunc(w.stopping, cancel)() // a stop ends the warm-up
	errc := make(chan error, 1)
	go func() { errc <- w.cfg.WarmUp(wctx, ln.Addr().String()) }()
	select {
	case err := <-errc:
		return err
	case err := <-early:
		return err
	case <-wctx.Done():
		return fmt.Errorf("WarmUp: %w", wctx.Err())
	}
}

// listen starts accepting on the shared socket (a dup of fd 3).
func (w *Worker) listen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.ln != nil {
		return nil
	}
	fl, err := net.FileListener(w.lnf)
	if err != nil {
		return fmt.Errorf("%w: listener: %w", ErrInherit, err)
	}
	// Each connection counts its reads, so that a drain never takes one
	// whose client began a request for idle (see idleConns).
	var ln net.Listener = trackedListener{Listener: fl, counts: w.block, bal: w.bal}
	var sl *serveListener
	if w.cfg.Serve != nil { // Config.Serve's connections are tracked by their listener
		sl = w.newServeListener(ln, true)
		w.served = append(slices.DeleteFunc(w.served, func(l *serveListener) bool { return l.open() == 0 }), sl)
		ln = sl
	}
	w.ln = ln
	w.closing.Store(false) // resumed: connections may be kept again
	w.serving.Add(1)
	go func() {
		defer w.serving.Done()
		var err error
		if sl != nil {
			w.serveShared(sl)
			return
		}
		if w.tls {
			err = w.srv.ServeTLS(ln, "", "")
		} else {
			err = w.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("serve", "err", err)
		}
	}()
	w.block.SetState(proc.StateListening)
	return nil
}

// unlisten stops accepting: this process's listener is closed (the shared
// socket's queue stays with the other holders), and every response from now
// on says "Connection: close". Keep-alives are not turned off (that closes
// idle connections at once, under a request a client may have just sent):
// pause and drain close a connection only once it has been idle for
// DrainIdleGrace (idleConns.closeIdle).
func (w *Worker) unlisten() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closing.Store(true)
	if sl, ok := w.ln.(*serveListener); ok {
		sl.shut() // Serve's context too
	} else if w.ln != nil {
		w.ln.Close()
	}
	w.ln = nil
}

// control obeys the master's wants until the worker stops.
func (w *Worker) control() {
	want := proc.WantRun
	for {
		select {
		case r := <-w.stopCh:
			w.drain(r)
			return
		default:
		}
		wait := time.Second
		if want == proc.WantPause {
			// Paused: the connections idle for the grace are closed.
			w.idle.closeIdle(w.cfg.Server.DrainIdleGrace)
			wait = pausedIdlePoll
		}
		next := w.block.WaitWant(want, func() bool { return len(w.stopCh) > 0 }, wait)
		if next == want {
			continue
		}
		want = next
		switch want {
		case proc.WantPause:
			w.unlisten()
			w.block.SetState(proc.StatePaused)
			w.log.Info("paused")
		case proc.WantRun:
			if err := w.listen(); err != nil {
				w.log.Error("resume", "err", err)
			} else {
				w.log.Info("resumed")
			}
		case proc.WantDrain:
			d := w.block.DrainDeadline()
			if d <= 0 {
				d = w.cfg.StopTimeout
			}
			w.log.Info("dismissed: draining", "deadline", d)
			w.drain(stopReq{deadline: d})
			return
		}
	}
}

// pausedIdlePoll is how often a paused worker looks for connections idle for
// DrainIdleGrace.
const pausedIdlePoll = 50 * time.Millisecond

// drain is the two-phase drain: stop accepting and let accepted work finish,
// then Shutdown with what is left of the deadline, then Close.
//
// A keep-alive connection is never closed while its client may be sending
// on it: closing one that has a request in flight resets it, and clients
// replay only idempotent requests (a PUT or POST fails). So the drain does
// not turn keep-alives off (that closes idle connections at once): every
// response from now on says "Connection: close" (the client closes after
// it), and a connection idle for DrainIdleGrace (its client is not using
// it) is closed by the worker, within half the deadline.
func (w *Worker) drain(r stopReq) {
	w.block.SetState(proc.StateDraining)
	deadline := time.Now().Add(r.deadline)
	w.unlisten()
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	// Serve returns once its listener is closed; by then every connection it
	// accepted has been counted (ConnState New runs in Serve's loop, before
	// the next Accept). Without this wait a connection accepted just before
	// the close could be missed by both phases and cut by the exit: the soak
	// test saw it as an EOF on a fresh connection.
	w.serving.Wait()
	if w.cfg.Serve != nil {
		w.drainServe(deadline)
	} else {
		w.drainHTTP(r.deadline, deadline)
	}
	w.serving.Wait()
	w.sendHeartbeat(w.col)
	w.block.SetState(proc.StateStopped)
	w.err = r.err
	w.close()
	close(w.done)
	w.log.Info("stopped")
}

// drainHTTP is the drain of the net/http server once its listener is
// closed and Serve returned.
func (w *Worker) drainHTTP(d time.Duration, deadline time.Time) {
	// Phase 1: accepted connections finish their request and close (their
	// responses say "Connection: close"; idle ones are closed after the
	// grace); bounded by half the deadline.
	half := time.Now().Add(d / 2)
	for w.c.openConns.Load() > 0 && time.Now().Before(half) {
		w.idle.closeIdle(w.cfg.Server.DrainIdleGrace)
		time.Sleep(5 * time.Millisecond)
	}
	// Phase 2: Shutdown closes what is idle and waits for the rest.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	if err := w.srv.Shutdown(ctx); err != nil {
		w.log.Warn("drain deadline passed: closing connections", "open", w.c.openConns.Load())
		w.srv.Close()
	}
	cancel()
}

// Stop drains the worker (the two-phase drain, bounded by deadline) as if the
// master had dismissed it; Wait returns when it is done. Calling it again has
// no effect.
func (w *Worker) Stop(deadline time.Duration) { w.stop(stopReq{deadline: deadline}) }

func (w *Worker) stop(r stopReq) {
	w.stopOnce.Do(func() {
		w.stopCh <- r
		w.stopNow()
		w.block.WakeWorker() // the control loop looks at stopCh
	})
}

// Shutdown drains the worker and waits until it is done or ctx ends. The
// drain deadline is ctx's (StopTimeout without one).
func (w *Worker) Shutdown(ctx context.Context) error {
	d := w.cfg.StopTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	w.Stop(d)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait blocks until the worker has drained and stopped. It returns nil after a
// dismissal, Stop or SIGTERM, and ErrMasterDied when the master died.
func (w *Worker) Wait() error {
	<-w.done
	return w.err
}

// Done is closed when the worker has stopped.
func (w *Worker) Done() <-chan struct{} { return w.done }

// watchMaster reads the death pipe: EOF means the master is gone (its write
// end was the only one). The worker drains briefly and exits the process.
func (w *Worker) watchMaster() {
	f := os.NewFile(proc.DeathFD, "death-pipe")
	var b [1]byte
	for {
		if _, err := f.Read(b[:]); err != nil {
			break
		}
	}
	select {
	case <-w.done:
		return
	default:
	}
	w.log.Warn("master died: draining and exiting")
	w.stop(stopReq{deadline: masterDeathDrain, err: ErrMasterDied})
	select {
	case <-w.done:
	case <-time.After(masterDeathDrain + 100*time.Millisecond):
	}
	time.Sleep(50 * time.Millisecond) // a moment for Wait's caller
	os.Exit(0)
}

// close releases the slot and the arena mapping: the master reaps the slot
// anyway, but a clean exit leaves no lock behind.
func (w *Worker) close() {
	if w.self != nil {
		w.self.Leave()
	}
}

// Slot returns the worker's slot in the arena's process table.
func (w *Worker) Slot() int { return w.slot }

// Arena returns the cluster's shared arena, mapped in this process.
func (w *Worker) Arena() *shm.Arena { return w.arena }

// Proc returns this worker's membership of the arena.
func (w *Worker) Proc() *shm.Proc { return w.self }

// Addr returns the shared listening address.
func (w *Worker) Addr() net.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ln != nil {
		return w.ln.Addr()
	}
	return nil
}

// ReportError counts an error in the next heartbeat.
func (w *Worker) ReportError() { w.c.errors.Add(1) }
