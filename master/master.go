package master

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/worker"
)

// Master supervises every child process of a cluster: the workers and the
// auxiliary processes (Config.Aux). It is safe for concurrent use; it must
// not be copied.
type Master struct {
	_      nocopy.NoCopy
	cfg    Config
	log    *slog.Logger
	blocks []proc.Block
	lnFd   int
	deathR *os.File // read end, handed to every child
	deathW *os.File // write end: only this process holds it; closed once every worker is gone

	mu       sync.Mutex
	byPid    map[int]*handle   // the live workers
	aux      map[int]*auxChild // the auxiliary processes (Config.Aux), by slot
	slotUsed []bool
	queue    []request
	queued   map[int]bool    // pids waiting in or going through the death queue
	current  int             // pid being replaced now, 0 if none
	pending  map[int]Respawn // slots whose respawn failed and is being retried
	stopping bool
	crashes  crashBackoff             // the workers' (each auxiliary process has its own)
	frozen   bool                     // Freeze began: no replacement is queued
	held     bool                     // Freeze found the master idle: no child is spawned
	spawning int                      // spawns between their start and their record
	target   int                      // the kept workers wanted: Config.Workers, then Scale's (scale.go)
	ceiling  int                      // Scale's bound (MaxWorkers), fixed at start
	scaleUp  int                      // workers a scale-up is starting (not kept yet): a respawn counts them
	scaling  bool                     // the death queue runs a scale request
	adopting bool                     // Adopt made this master: an upgrade replaces the workers until UpgradeEnded
	replaced [len(reasonNames)]uint64 // replacements done, by Reason

	qWake    chan struct{}
	stopCh   chan struct{} // closed when a stop begins
	killCh   chan struct{} // closed when a stop must finish at once
	done     chan struct{} // closed when every worker is gone, then every auxiliary process
	stopOnce sync.Once
	doneOnce sync.Once
	killOnce sync.Once
	up       atomic.Bool
	wg       sync.WaitGroup
	watchers sync.WaitGroup // watch goroutines: they touch the arena

	gomaxprocs string // "GOMAXPROCS=n" added to the workers' environment, or ""

	initial  []*handle     // the initial workers Start spawned, for WaitUp
	waitOnce sync.Once     // WaitUp's work runs once
	upDone   chan struct{} // closed when WaitUp's work is over
	upErr    error         // its outcome, set before upDone closes
	started  atomic.Bool   // WaitUp succeeded: the control methods apply
	upMu     sync.Mutex    // orders going up (WaitUp) and a stop's beginning
}

type request struct {
	pid    int
	reason Reason
	detail string           // the rule's figures, for the log ("" if none)
	done   chan error       // nil, or receives the outcome
	scale  chan scaleResult // a scale request (pid 0): receives what reconcile did
}

// handle is the master's side of one child process: a worker, or an
// auxiliary process (role other than proc.RoleWorker: no control block
// watcher, never in byPid; only pid, slot, cmd, state, keep and the
// channels are used). An adopted child (Adopt: the previous image of this
// process spawned it) is the same but for its *exec.Cmd, which it never had.
type handle struct {
	role      proc.Role
	pid, slot int
	proc      *os.Process // a spawned child's cmd.Process, or an adopted one's os.FindProcess (a pidfd)
	started   time.Time
	block     *proc.Block

	// Under Master.mu:
	state              State
	keep               bool   // respawn this slot if the process exits (not old, not a guarded successor)
	ready              bool   // reached listening once
	failed             bool   // reported warm-up failure
	reason             string // why it failed to start, in its own words ("" if it gave none)
	progress           int    // start events emitted so far: progressWarming, progressWarmed
	drainAck           bool   // reported draining (or stopped)
	killedUnresponsive bool   // got SIGKILL for not draining (emitted once)
	lastHB             time.Time
	hb                 worker.Heartbeat
	build              Build         // read from the block at the first state past forked
	changed            chan struct{} // closed and replaced on every change
	exited             chan struct{} // closed when reaped and its death handled

	reaped  chan struct{} // closed once the process was waited for: the watcher's last pass
	watched chan struct{} // closed when the watcher is done
}

// Start spawns the auxiliary processes (Config.Aux), each in its slot, and
// waits until each is ready (they come before any worker); then it spawns
// the initial workers and returns at once, with the workers forked
// (Workers lists them from then on). WaitUp waits until they are up. An
// auxiliary process that exits before it is ready fails Start with an error
// wrapping ErrStartFailed, after the others are stopped.
func Start(ctx context.Context, cfg Config) (*Master, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("master: death pipe: %w", err)
	}
	m, err := newMaster(ctx, cfg, r, w)
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	for _, a := range m.cfg.Aux {
		if err := m.startAux(ctx, a); err != nil {
			m.abort()
			return nil, err
		}
	}
	var hs []*handle
	for range m.cfg.Workers {
		h, err := m.spawnFree()
		if err != nil {
			m.abort()
			return nil, err
		}
		hs = append(hs, h)
	}
	m.initial, m.upDone = hs, make(chan struct{})
	return m, nil
}

// newMaster is Start's and Adopt's common part: the configuration, the pid
// directory, the supervision region and the listener's mode, with the death
// pipe's ends (a new pipe, or the handed-over one).
func newMaster(ctx context.Context, cfg Config, r, w *os.File) (*Master, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if c.PidDir != "" {
		// Before anything else: an unsafe directory starts nothing. Then
		// what a killed master left (the pid files of dead pids).
		if err := preparePidDir(c.PidDir); err != nil {
			return nil, err
		}
		removed, err := removeStalePidFiles(c.PidDir)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrPidDir, c.PidDir, err)
		}
		if len(removed) > 0 {
			c.Logger.Info("removed the pid files of dead processes", "dir", c.PidDir, "files", removed)
		}
	}
	blocks, err := proc.Region(ctx, c.Arena)
	if err != nil {
		return nil, fmt.Errorf("master: supervision region: %w", err)
	}
	m := &Master{
		cfg: c, blocks: blocks, lnFd: int(c.Listener.Fd()), deathR: r, deathW: w,
		log:   c.Logger.With("role", "master", "pid", os.Getpid()),
		byPid: map[int]*handle{}, aux: map[int]*auxChild{}, slotUsed: make([]bool, c.Arena.SlotCount()), queued: map[int]bool{}, pending: map[int]Respawn{},
		qWake: make(chan struct{}, 1), stopCh: make(chan struct{}), killCh: make(chan struct{}), done: make(chan struct{}),
		target: c.Workers, ceiling: max(c.Workers, min(c.MaxWorkers, proc.WorkerSlots(c.Arena.SlotCount())/2)),
	}
	for slot := range m.slotUsed {
		// The master's slot and the auxiliary one (the cache manager of
		// Cache.Mode standalone joins it) are never a worker's.
		m.slotUsed[slot] = proc.SlotRole(slot, len(m.slotUsed)) != proc.RoleWorker
	}
	if !slices.ContainsFunc(c.Env, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
		// Prefork: the workers share the cores instead of each scheduling on
		// all of them (Workers defaults to the number of CPUs: one P each).
		m.gomaxprocs = "GOMAXPROCS=" + strconv.Itoa(max(1, runtime.NumCPU()/c.Workers))
	}
	if err := m.writePid("master", os.Getpid()); err != nil {
		return nil, fmt.Errorf("%w: master pid file: %w", ErrPidDir, err)
	}
	if err := proc.SetNonblock(m.lnFd); err != nil {
		m.removePid("master", os.Getpid())
		return nil, fmt.Errorf("master: listener: %w", err)
	}
	return m, nil
}

// WaitUp waits until every initial worker is listening and warmed up, then
// puts the cluster in rotation (Up, EventUp) and starts the death queue and
// the signal handling. A worker that fails is retried in its slot
// (ReplaceRetries, with back-off); if one never becomes ready, or ctx ends,
// WaitUp stops the others (SIGKILL) and returns an error wrapping
// ErrStartFailed; a stop begun meanwhile (Stop, Kill) makes it return
// ErrStopped and leaves the stop alone. Its work runs once: later calls
// wait for the same outcome (or their own ctx).
func (m *Master) WaitUp(ctx context.Context) error {
	m.waitOnce.Do(func() {
		go func() {
			m.upErr = m.waitUp(ctx)
			close(m.upDone)
		}()
	})
	select {
	case <-m.upDone:
		return m.upErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Master) waitUp(ctx context.Context) error {
	c := m.cfg
	hs := m.initial
	for i, h := range hs {
		for attempt := 0; ; attempt++ {
			err := m.waitReady(ctx, h)
			if err == nil {
				// From now on a death of this worker is a crash to respawn.
				m.mu.Lock()
				if h.state == Died {
					err = fmt.Errorf("worker %d exited after listening", h.pid)
				} else {
					h.keep = true
				}
				m.mu.Unlock()
				if err == nil {
					break
				}
			}
			if m.isStopping() {
				return fmt.Errorf("%w: slot %d: %w", ErrStopped, h.slot, err)
			}
			m.killAndReap(h)
			if attempt >= c.ReplaceRetries || ctx.Err() != nil {
				m.abort()
				return fmt.Errorf("%w: the initial worker of slot %d: %w", ErrStartFailed, h.slot, err)
			}
			m.log.Warn("initial worker failed; retrying", "slot", h.slot, "err", err)
			_ = xtime.SleepCtx(ctx, retryDelay(attempt)) // ctx's end is checked after the next attempt
			m.mu.Lock()
			m.slotUsed[h.slot] = true // reap freed it
			m.mu.Unlock()
			if h, err = m.spawn(h.slot); err != nil {
				m.abort()
				return err
			}
			hs[i] = h
		}
	}
	if err := m.goUp(); err != nil {
		return err
	}
	m.log.Info("cluster up", "workers", c.Workers, "heartbeat", c.HeartbeatInterval, "nanny", c.NannyTolerance)
	return nil
}

// goUp puts the cluster into rotation, unless a stop began: beginStop and
// this are ordered by upMu, so up is never stored (nor EventUp emitted)
// after EventDown. The death queue and the signal handling start here.
func (m *Master) goUp() error {
	m.upMu.Lock()
	defer m.upMu.Unlock()
	if m.isStopping() {
		return ErrStopped
	}
	m.wg.Add(1)
	go m.deathQueue()
	if m.cfg.HandleSignals {
		go m.signals(m.notifySignals()) // subscribed now, before EventUp
	}
	m.started.Store(true)
	m.up.Store(true)
	m.emit(EventUp, nil, nil)
	return nil
}

// warmUpError is ErrWarmUp with the worker's reason, when it gave one.
func warmUpError(reason string) error {
	if reason == "" {
		return ErrWarmUp
	}
	return fmt.Errorf("%w: %s", ErrWarmUp, reason)
}

// retryBackoff is the back-off between attempts of a guarded start.
var retryBackoff = backoff.Backoff{First: 200 * time.Millisecond, Factor: 1.5, Max: 5 * time.Second}

// retryDelay is the delay before the attempt after attempt (0: the first)
// of a guarded start failed.
func retryDelay(attempt int) time.Duration { return retryBackoff.Delay(attempt + 1) }

// writePid writes the pid file of kind and pid (see piddir.go: never
// through a symlink); a failure is logged and returned.
func (m *Master) writePid(kind string, pid int) error {
	if m.cfg.PidDir == "" {
		return nil
	}
	if err := writePidFile(m.cfg.PidDir, pidFileName(kind, pid), pid); err != nil {
		m.log.Warn("pid file", "kind", kind, "pid", pid, "err", err)
		return err
	}
	return nil
}

func (m *Master) removePid(kind string, pid int) {
	if m.cfg.PidDir != "" {
		os.Remove(filepath.Join(m.cfg.PidDir, pidFileName(kind, pid)))
	}
}

// Up reports whether the cluster is in rotation: every initial worker warmed
// up and listening, and no stop begun.
func (m *Master) Up() bool { return m.up.Load() }

// Workers returns every live worker, by slot.
func (m *Master) Workers() []WorkerInfo {
	m.mu.Lock()
	out := make([]WorkerInfo, 0, len(m.byPid))
	for _, h := range m.byPid {
		out = append(out, WorkerInfo{Pid: h.pid, Slot: h.slot, State: h.state, Started: h.started,
			LastHeartbeat: h.lastHB, Heartbeat: h.hb, Build: h.build, Accepts: h.block.Accepts(), Requests: h.block.Requests(),
			RequestLimit: h.block.RequestLimit(), HungRequests: h.block.Hung()})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b WorkerInfo) int { return a.Slot - b.Slot })
	return out
}

// errStarting is the control methods' error before WaitUp succeeded.
var errStarting = fmt.Errorf("%w: the workers are still starting", ErrWrongState)

func (m *Master) lookup(pid int) (*handle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return nil, ErrStopped
	}
	if !m.started.Load() {
		return nil, errStarting
	}
	if m.frozen {
		return nil, ErrUpgrading
	}
	h, ok := m.byPid[pid]
	if !ok {
		return nil, fmt.Errorf("%w: pid %d", ErrUnknownWorker, pid)
	}
	return h, nil
}

// Pause asks worker pid to stop accepting (in-flight requests finish) and
// waits until it did, or ctx ends. Paused workers are not recycled.
func (m *Master) Pause(ctx context.Context, pid int) error {
	return m.setWant(ctx, pid, proc.WantPause, Active, Paused)
}

// Resume asks a paused worker to accept again and waits until it does.
func (m *Master) Resume(ctx context.Context, pid int) error {
	return m.setWant(ctx, pid, proc.WantRun, Paused, Active)
}

func (m *Master) setWant(ctx context.Context, pid int, want proc.Want, from, to State) error {
	h, err := m.lookup(pid)
	if err != nil {
		return err
	}
	m.mu.Lock()
	st := h.state
	m.mu.Unlock()
	if st == to {
		return nil
	}
	if st != from {
		return fmt.Errorf("%w: worker %d is %v, not %v", ErrWrongState, pid, st, from)
	}
	h.block.SetWant(want)
	for {
		m.mu.Lock()
		st, ch := h.state, h.changed
		m.mu.Unlock()
		switch st {
		case to:
			return nil
		case Died, Old:
			return fmt.Errorf("%w: worker %d became %v", ErrWrongState, pid, st)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// DeathQueue returns the pids waiting for replacement, the one being
// replaced first (the Node original's deathQueue status).
func (m *Master) DeathQueue() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, 0, len(m.queue)+1)
	if m.current != 0 {
		out = append(out, m.current)
	}
	for _, r := range m.queue {
		if r.scale == nil {
			out = append(out, r.pid)
		}
	}
	return out
}
