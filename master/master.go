package master

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/worker"
)

// State is a worker's state as the master sees it:
// forked → warming → active ⇄ paused → old → died.
type State int

// The states of a worker.
const (
	Forked  State = iota // spawned; not reported yet
	Warming              // running WarmUp (or warmed, joining the socket)
	Active               // accepting on the shared socket
	Paused               // not accepting, by request
	Old                  // replaced: draining before exit
	Died                 // exited
)

var stateNames = [...]string{"forked", "warming", "active", "paused", "old", "died"}

// String returns the state's name.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText encodes the state as its name (in JSON: "active", …).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state's name.
func (s *State) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("master: unknown state %q", b)
	}
	*s = State(i)
	return nil
}

// Event is a lifecycle event: Name is "worker-<pid>-<what>" for a worker
// (what: forked, warming, warmup, warmup-failure, listening, paused, resumed,
// draining, old, unresponsive, sigterm, sigkill, died, replace-failure) or a
// cluster event ("up", "down", "rolling-restart", "respawn-failure"). A
// worker's start events come as the sequence forked, warming, warmup,
// listening (or warmup-failure after warming) for every worker; see the
// package doc. OnEvent receives them in the master; the emitter publishes
// them to other processes.
type Event struct {
	Name string
	Pid  int   // the worker's pid, 0 for cluster events
	Slot int   // the worker's slot (respawn-failure: the slot being refilled), 0 for other cluster events
	Err  error // what went wrong, for failures
	Time time.Time
}

// WorkerInfo describes one worker for Workers.
type WorkerInfo struct {
	Pid           int
	Slot          int
	State         State
	Started       time.Time
	LastHeartbeat time.Time        // zero before the first
	Heartbeat     worker.Heartbeat // the latest, zero before the first
}

// Master supervises the workers of a cluster. It is safe for concurrent use;
// it must not be copied.
type Master struct {
	cfg    Config
	log    *slog.Logger
	blocks []proc.Block
	lnFd   int
	deathR *os.File // read end, handed to every worker
	deathW *os.File // write end: only this process holds it

	mu       sync.Mutex
	byPid    map[int]*handle
	slotUsed []bool
	queue    []request
	queued   map[int]bool    // pids waiting in or going through the death queue
	current  int             // pid being replaced now, 0 if none
	pending  map[int]Respawn // slots whose respawn failed and is being retried
	stopping bool
	crashes  struct {
		last  time.Time
		delay time.Duration
	}

	qWake    chan struct{}
	stopCh   chan struct{} // closed when a stop begins
	killCh   chan struct{} // closed when a stop must finish at once
	done     chan struct{} // closed when every worker is gone
	stopOnce sync.Once
	killOnce sync.Once
	up       atomic.Bool
	wg       sync.WaitGroup
	watchers sync.WaitGroup // watch goroutines: they touch the arena

	gomaxprocs string // "GOMAXPROCS=n" added to the workers' environment, or ""
}

type request struct {
	pid    int
	reason string
	done   chan error // nil, or receives the outcome
}

// handle is the master's side of one worker process.
type handle struct {
	pid, slot int
	cmd       *exec.Cmd
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
	changed            chan struct{} // closed and replaced on every change
	exited             chan struct{} // closed when reaped and its death handled

	reaped  chan struct{} // closed once the process was waited for: the watcher's last pass
	watched chan struct{} // closed when the watcher is done
}

// Start spawns the initial workers and returns once every one of them is
// listening and warmed up. A worker that fails is retried (ReplaceRetries,
// with back-off); if one never becomes ready Start stops the others and
// returns an error wrapping ErrStartFailed.
func Start(ctx context.Context, cfg Config) (*Master, error) {
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
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("master: death pipe: %w", err)
	}
	m := &Master{
		cfg: c, blocks: blocks, lnFd: int(c.Listener.Fd()), deathR: r, deathW: w,
		log:   c.Logger.With("role", "master", "pid", os.Getpid()),
		byPid: map[int]*handle{}, slotUsed: make([]bool, c.Arena.SlotCount()), queued: map[int]bool{}, pending: map[int]Respawn{},
		qWake: make(chan struct{}, 1), stopCh: make(chan struct{}), killCh: make(chan struct{}), done: make(chan struct{}),
	}
	m.slotUsed[0] = true // the master's
	// The last slot is never a worker's: it is kept for an auxiliary process
	// of the cluster (the cache manager of Cache.Mode standalone joins it).
	m.slotUsed[len(m.slotUsed)-1] = true
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

	var hs []*handle
	for range c.Workers {
		h, err := m.spawnFree()
		if err != nil {
			m.abort()
			return nil, err
		}
		hs = append(hs, h)
	}
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
			m.killAndReap(h)
			if attempt >= c.ReplaceRetries || ctx.Err() != nil {
				m.abort()
				return nil, fmt.Errorf("%w: slot %d: %w", ErrStartFailed, h.slot, err)
			}
			m.log.Warn("initial worker failed; retrying", "slot", h.slot, "err", err)
			sleepCtx(ctx, retryDelay(attempt))
			m.mu.Lock()
			m.slotUsed[h.slot] = true // reap freed it
			m.mu.Unlock()
			if h, err = m.spawn(h.slot); err != nil {
				m.abort()
				return nil, err
			}
			hs[i] = h
		}
	}
	m.wg.Add(1)
	go m.deathQueue()
	if c.HandleSignals {
		go m.signals()
	}
	m.up.Store(true)
	m.emit("up", nil, nil)
	m.log.Info("cluster up", "workers", c.Workers, "heartbeat", c.HeartbeatInterval, "nanny", c.NannyTolerance)
	return m, nil
}

// warmUpError is ErrWarmUp with the worker's reason, when it gave one.
func warmUpError(reason string) error {
	if reason == "" {
		return ErrWarmUp
	}
	return fmt.Errorf("%w: %s", ErrWarmUp, reason)
}

// retryDelay is the back-off between attempts of a guarded start.
func retryDelay(attempt int) time.Duration {
	d := 200 * time.Millisecond
	for range attempt {
		d = d * 3 / 2
	}
	return min(d, 5*time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// spawnFree spawns a worker in the lowest free slot.
func (m *Master) spawnFree() (*handle, error) {
	m.mu.Lock()
	slot := slices.Index(m.slotUsed, false)
	if slot < 0 {
		m.mu.Unlock()
		return nil, ErrNoSlot
	}
	m.slotUsed[slot] = true
	m.mu.Unlock()
	h, err := m.spawn(slot)
	if err != nil {
		m.mu.Lock()
		m.slotUsed[slot] = false
		m.mu.Unlock()
	}
	return h, err
}

// spawn starts a worker in slot (already marked used) and its watchers.
func (m *Master) spawn(slot int) (*handle, error) {
	b := &m.blocks[slot]
	b.Reset(m.cfg.ReplaceTimeout)
	cmd := exec.Command(m.cfg.Exe, m.cfg.Args[1:]...)
	cmd.Args[0] = m.cfg.Args[0]
	cmd.Env = proc.WorkerEnv(m.cfg.Env, slot, os.Getpid())
	if m.gomaxprocs != "" {
		cmd.Env = append(cmd.Env, m.gomaxprocs)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{m.cfg.Listener, m.cfg.Arena.File(), m.deathR}
	err := cmd.Start()
	// Whatever Start did to the descriptors, the shared description must stay
	// non-blocking for every process (see internal/proc).
	if nbErr := proc.SetNonblock(m.lnFd); nbErr != nil && err == nil {
		m.log.Error("listener: cannot restore non-blocking mode", "err", nbErr)
	}
	if err != nil {
		return nil, fmt.Errorf("master: spawn worker in slot %d: %w", slot, err)
	}
	h := &handle{pid: cmd.Process.Pid, slot: slot, cmd: cmd, started: time.Now(), block: b,
		changed: make(chan struct{}), exited: make(chan struct{}), reaped: make(chan struct{}), watched: make(chan struct{})}
	m.mu.Lock()
	m.byPid[h.pid] = h
	if m.stopping {
		// A stop began while it started: it must not outlive the stop's drain.
		h.cmd.Process.Signal(syscall.SIGKILL)
	}
	m.mu.Unlock()
	m.writePid("worker", h.pid)
	m.emit("forked", h, nil)
	go m.reap(h)
	m.watchers.Add(1)
	go m.watch(h)
	return h, nil
}

// reap waits for the process, releases its arena slot at once, and decides
// what its death means.
func (m *Master) reap(h *handle) {
	err := h.cmd.Wait()
	if rerr := m.cfg.Arena.ReleaseSlot(h.slot); rerr != nil {
		m.log.Error("release slot", "slot", h.slot, "err", rerr)
	}
	m.removePid("worker", h.pid)
	close(h.reaped)
	h.block.WakeMaster()
	<-h.watched                // its last pass has reported what the worker wrote
	reason := h.block.Reason() // no writer is left; the slot is not reset before this death is handled
	m.mu.Lock()
	was := h.state
	h.state = Died
	if h.reason == "" {
		h.reason = reason
	}
	respawn := h.keep && !m.stopping && m.current != h.pid
	delete(m.byPid, h.pid)
	if !respawn {
		m.slotUsed[h.slot] = false
	}
	h.notifyLocked()
	var delay time.Duration
	if respawn {
		delay = m.crashDelayLocked()
	}
	last := len(m.byPid) == 0 && m.stopping
	m.mu.Unlock()
	// The event goes out before exited closes: whatever waits for this death
	// (the death queue's next replacement) comes after it in the event order.
	m.emit("died", h, err)
	close(h.exited)
	switch {
	case respawn:
		m.log.Warn("worker died", "worker", h.pid, "slot", h.slot, "state", was, "err", err)
	case was != Old:
		m.log.Info("worker exited", "worker", h.pid, "slot", h.slot, "state", was, "err", err)
	}
	if respawn {
		m.log.Warn("replacing crashed worker", "worker", h.pid, "slot", h.slot, "delay", delay)
		go m.respawn(h.slot, delay)
	}
	if last {
		m.finish()
	}
}

// crashDelayLocked returns the back-off before replacing a crashed worker:
// none for a lone crash, ×1.5 per crash in a row (crashes less than
// CrashBackoffMax apart), capped at CrashBackoffMax.
func (m *Master) crashDelayLocked() time.Duration {
	now := time.Now()
	if m.crashes.last.IsZero() || now.Sub(m.crashes.last) > m.cfg.CrashBackoffMax+m.crashes.delay {
		m.crashes.delay = 0
	} else if m.crashes.delay == 0 {
		m.crashes.delay = 100 * time.Millisecond
	} else {
		m.crashes.delay = min(m.crashes.delay*3/2, m.cfg.CrashBackoffMax)
	}
	m.crashes.last = now
	return m.crashes.delay
}

// respawnFree spawns a kept worker in any free slot after delay.
func (m *Master) respawnFree(delay time.Duration) {
	m.mu.Lock()
	slot := slices.Index(m.slotUsed, false)
	if slot < 0 || m.stopping {
		m.mu.Unlock()
		m.log.Error("cannot replace a lost worker", "err", ErrNoSlot)
		return
	}
	m.slotUsed[slot] = true
	m.mu.Unlock()
	m.respawn(slot, delay)
}

// respawn fills slot (marked used by the caller) again after delay; the new
// worker is kept too, so a crash loop goes on being backed off rather than
// shrinking the cluster.
//
// A spawn that fails (fork/exec out of descriptors or memory) is retried
// until the slot is filled or a stop begins, after a back-off of
// respawnRetryFirst growing ×2 up to CrashBackoffMax: the slot stays
// reserved meanwhile, Respawning lists it (the monitor's /status shows it)
// and every failed attempt is logged and emitted as "respawn-failure".
func (m *Master) respawn(slot int, delay time.Duration) {
	retry := respawnRetryFirst
	for attempt := 1; ; attempt++ {
		select {
		case <-time.After(delay):
		case <-m.stopCh:
		}
		m.mu.Lock()
		stopping := m.stopping
		if stopping {
			m.slotUsed[slot] = false
			delete(m.pending, slot)
		}
		m.mu.Unlock()
		if stopping {
			return
		}
		h, err := m.spawn(slot)
		if err == nil {
			m.mu.Lock()
			h.keep = true
			delete(m.pending, slot)
			m.mu.Unlock()
			if attempt > 1 {
				m.log.Info("respawned after failed attempts", "slot", slot, "worker", h.pid, "attempts", attempt)
			}
			return
		}
		delay, retry = retry, min(retry*2, m.cfg.CrashBackoffMax)
		m.mu.Lock()
		m.pending[slot] = Respawn{Slot: slot, Attempts: attempt, Err: err.Error(), Since: m.pendingSince(slot), Next: time.Now().Add(delay)}
		m.mu.Unlock()
		m.log.Error("respawn failed; the cluster is one worker short until it succeeds",
			"slot", slot, "attempt", attempt, "retry-in", delay, "err", err)
		m.emitSlot("respawn-failure", slot, err)
	}
}

// respawnRetryFirst is the first delay before retrying a failed respawn.
const respawnRetryFirst = 250 * time.Millisecond

// pendingSince returns when slot's respawn began failing (now for a first
// failure). Called with mu held.
func (m *Master) pendingSince(slot int) time.Time {
	if p, ok := m.pending[slot]; ok {
		return p.Since
	}
	return time.Now()
}

// Respawn describes a slot whose worker could not be replaced yet: the
// master keeps trying (see Respawning).
type Respawn struct {
	Slot     int       `json:"slot"`
	Attempts int       `json:"attempts"` // failed spawns so far
	Err      string    `json:"error"`    // the last one's error
	Since    time.Time `json:"since"`    // the first failure
	Next     time.Time `json:"next"`     // the next attempt
}

// Respawning returns the slots whose lost worker the master failed to
// replace so far and is still trying to (with capped back-off, until it
// succeeds or the cluster stops), by slot. Empty when the cluster has every
// worker it should.
func (m *Master) Respawning() []Respawn {
	m.mu.Lock()
	out := make([]Respawn, 0, len(m.pending))
	for _, p := range m.pending {
		out = append(out, p)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Respawn) int { return a.Slot - b.Slot })
	return out
}

// watch follows the worker's control block: state changes and heartbeats,
// and the nanny. It sleeps on the block's event, never polls faster than
// once a second.
func (m *Master) watch(h *handle) {
	defer m.watchers.Done()
	var seen proc.State
	var hbSeq uint64
	var words [proc.HeartbeatWords]uint64
	defer close(h.watched)
	reaped := func() bool {
		select {
		case <-h.reaped:
			return true
		default:
			return false
		}
	}
	for {
		h.block.WaitMaster(seen, hbSeq, reaped, time.Second)
		// Once the process is reaped, one last pass reports what it wrote
		// before it died (a warm-up failure just before exiting), then reap
		// goes on with the death.
		final := reaped()
		if st := h.block.State(); st != seen {
			seen = st
			m.onState(h, st)
		}
		if s := h.block.HeartbeatSeq(); s != hbSeq {
			if got, ok := h.block.LoadHeartbeat(&words); ok {
				hbSeq = got
				m.onHeartbeat(h, worker.HeartbeatFromWords(&words))
			} else {
				// Being written, or the writer stopped half way (SIGSTOP, or
				// killed: then exited closes soon). Wait for the next change
				// rather than spin on this one.
				hbSeq = s
			}
		}
		if final {
			return
		}
		m.nanny(h)
	}
}

// Progress of a worker's start events (handle.progress), and their names.
const (
	progressForked  = iota // "forked" (emitted by spawn)
	progressWarming        // "warming"
	progressWarmed         // "warmup"
)

var startEvents = [...]string{progressForked: "forked", progressWarming: "warming", progressWarmed: "warmup"}

func (m *Master) onState(h *handle, st proc.State) {
	// The events go out before the change is applied: whatever waits for it
	// (the death queue waits for "listening" before dismissing the old
	// worker) then comes after it in the event order. onState runs on the
	// handle's one watcher goroutine, so its calls do not interleave.
	//
	// The watcher sees only the latest state, so a fast warm-up can pass
	// warming and warmed between two looks. A worker's start always goes
	// forked, warming, warmed (or warm-failed), listening, so the start
	// events are emitted as that sequence for every worker: a state seen
	// later than one not emitted yet brings the skipped events first, in
	// order (their Time is when the master noticed).
	m.mu.Lock()
	prev, progress, ready := h.state, h.progress, h.ready
	m.mu.Unlock()
	var names []string
	var err error
	catchUp := func(upTo int) {
		for p := progress + 1; p <= upTo; p++ {
			names = append(names, startEvents[p])
		}
		progress = max(progress, upTo)
	}
	switch st {
	case proc.StateWarming:
		catchUp(progressWarming)
	case proc.StateWarmed:
		catchUp(progressWarmed)
	case proc.StateListening:
		if !ready {
			catchUp(progressWarmed)
		}
		if prev == Paused {
			names = append(names, "resumed")
		} else {
			names = append(names, "listening")
		}
	case proc.StatePaused:
		names = []string{"paused"}
	case proc.StateWarmFailed:
		catchUp(progressWarming)
		names, err = append(names, "warmup-failure"), warmUpError(h.block.Reason())
	case proc.StateDraining:
		names = []string{"draining"}
	}
	for _, name := range names {
		m.emit(name, h, err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	h.progress = progress
	switch st {
	case proc.StateWarming, proc.StateWarmed:
		if h.state == Forked {
			h.state = Warming
		}
	case proc.StateListening:
		h.ready = true
		if h.state != Old && h.state != Died {
			h.state = Active
		}
	case proc.StatePaused:
		if h.state == Active {
			h.state = Paused
		}
	case proc.StateWarmFailed:
		h.failed = true
		h.reason = h.block.Reason()
	case proc.StateDraining, proc.StateStopped:
		h.drainAck = true
	}
	h.notifyLocked()
}

func (m *Master) onHeartbeat(h *handle, hb worker.Heartbeat) {
	m.mu.Lock()
	h.hb, h.lastHB = hb, time.Now()
	active := h.state == Active && h.keep
	m.mu.Unlock()
	if m.cfg.OnHeartbeat != nil {
		m.cfg.OnHeartbeat(h.pid, hb)
	}
	if !active {
		return
	}
	switch {
	case m.cfg.MemoryLimit > 0 && hb.RSS > m.cfg.MemoryLimit:
		m.enqueue(h.pid, fmt.Sprintf("memory %d over limit %d", hb.RSS, m.cfg.MemoryLimit), nil)
	case m.cfg.ShouldKill(hb):
		m.enqueue(h.pid, "ShouldKill", nil)
	}
}

// nanny replaces an active worker whose heartbeats stopped.
func (m *Master) nanny(h *handle) {
	if m.cfg.NannyTolerance < 0 {
		return
	}
	m.mu.Lock()
	last := h.lastHB
	if last.IsZero() {
		last = h.started
	}
	late := h.state == Active && h.keep && time.Since(last) > m.cfg.NannyTolerance
	m.mu.Unlock()
	if late {
		m.enqueue(h.pid, "nanny: no heartbeat for "+time.Since(last).Round(time.Millisecond).String(), nil)
	}
}

func (h *handle) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// waitReady waits until h is listening (ready), or fails: warm-up failure,
// exit, ReplaceTimeout, stop or ctx.
func (m *Master) waitReady(ctx context.Context, h *handle) error {
	t := time.NewTimer(m.cfg.ReplaceTimeout)
	defer t.Stop()
	for {
		m.mu.Lock()
		ready, failed, state, ch := h.ready, h.failed, h.state, h.changed
		m.mu.Unlock()
		switch {
		case failed:
			m.mu.Lock()
			reason := h.reason
			m.mu.Unlock()
			return fmt.Errorf("worker %d: %w", h.pid, warmUpError(reason))
		case ready:
			return nil
		case state == Died:
			m.mu.Lock()
			reason := h.reason
			m.mu.Unlock()
			if reason != "" {
				return fmt.Errorf("worker %d: %w: %s", h.pid, ErrExited, reason)
			}
			return fmt.Errorf("worker %d: %w", h.pid, ErrExited)
		}
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("worker %d: %w: not listening after %v (ReplaceTimeout)", h.pid, ErrNotReady, m.cfg.ReplaceTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-m.killCh:
			return ErrStopped
		}
	}
}

// killAndReap kills h and waits until it is reaped.
func (m *Master) killAndReap(h *handle) {
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
}

// emitSlot sends a cluster event about slot (no process in it) to OnEvent.
func (m *Master) emitSlot(what string, slot int, err error) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Name: what, Slot: slot, Err: err, Time: time.Now()})
	}
}

// emit sends an event to OnEvent.
func (m *Master) emit(what string, h *handle, err error) {
	if m.cfg.OnEvent == nil {
		return
	}
	e := Event{Name: what, Err: err, Time: time.Now()}
	if h != nil {
		e.Name = "worker-" + strconv.Itoa(h.pid) + "-" + what
		e.Pid, e.Slot = h.pid, h.slot
	}
	m.cfg.OnEvent(e)
}

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
			LastHeartbeat: h.lastHB, Heartbeat: h.hb})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b WorkerInfo) int { return a.Slot - b.Slot })
	return out
}

func (m *Master) lookup(pid int) (*handle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopping {
		return nil, ErrStopped
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

// Done is closed once the master has stopped and every worker is gone.
func (m *Master) Done() <-chan struct{} { return m.done }

// DeathQueue returns the pids waiting for replacement, the one being
// replaced first (the seed's deathQueue status).
func (m *Master) DeathQueue() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, 0, len(m.queue)+1)
	if m.current != 0 {
		out = append(out, m.current)
	}
	for _, r := range m.queue {
		out = append(out, r.pid)
	}
	return out
}

// Wait blocks until the master has stopped and every worker is gone. After
// it returns the master no longer touches the arena: it may be closed.
func (m *Master) Wait() {
	<-m.done
	m.watchers.Wait()
}

// abort kills every worker and waits until the master no longer touches the
// arena (Start's failure path: the caller closes the arena next).
func (m *Master) abort() {
	m.Kill()
	m.Wait()
}

// Stopping is closed when a stop begins (signal, Stop or Kill).
func (m *Master) Stopping() <-chan struct{} { return m.stopCh }

// finish completes a stop once no worker is left.
func (m *Master) finish() {
	m.deathW.Close() // EOF for anything still holding the read end
	m.deathR.Close()
	m.removePid("master", os.Getpid())
	select {
	case <-m.done:
	default:
		close(m.done)
	}
}

// beginStop marks the master stopping; it reports whether it was the first.
func (m *Master) beginStop() (first bool) {
	m.stopOnce.Do(func() {
		first = true
		m.up.Store(false)
		m.emit("down", nil, nil)
		m.mu.Lock()
		m.stopping = true
		empty := len(m.byPid) == 0
		m.mu.Unlock()
		close(m.stopCh)
		if empty {
			m.finish()
		}
	})
	return first
}

// Stop stops the cluster gracefully: out of rotation first, then every worker
// drains (two-phase) and exits; workers still alive when ctx ends (or after
// StopTimeout, whichever comes first) are killed. A worker that cannot drain
// (SIGSTOPped, hung: it neither acknowledges the drain nor sends a heartbeat
// within the unresponsive grace, as for a dismissed worker) is killed once
// the grace has passed, not at StopTimeout. It returns once every worker is
// gone.
func (m *Master) Stop(ctx context.Context) error {
	m.beginStop()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StopTimeout)
	defer cancel()
	m.mu.Lock()
	hs := make([]*handle, 0, len(m.byPid))
	for _, h := range m.byPid {
		hs = append(hs, h)
	}
	m.mu.Unlock()
	deadline := m.cfg.StopTimeout
	if dl, ok := ctx.Deadline(); ok {
		deadline = time.Until(dl)
	}
	for _, h := range hs {
		h.block.SetDrainDeadline(deadline)
		h.block.SetWant(proc.WantDrain)
	}
	for _, h := range hs {
		go m.killIfUnresponsive(h) // returns by the grace, or once h exits or the stop must finish
	}
	select {
	case <-m.done:
		m.watchers.Wait()
		return nil
	case <-ctx.Done():
		m.log.Warn("stop timeout: killing remaining workers")
	case <-m.killCh:
	}
	m.Kill()
	m.Wait()
	return ctx.Err()
}

// Kill stops the cluster at once: every worker gets SIGKILL. It does not
// wait; Wait does.
func (m *Master) Kill() {
	m.beginStop()
	m.killOnce.Do(func() { close(m.killCh) })
	m.mu.Lock()
	for _, h := range m.byPid {
		h.cmd.Process.Signal(syscall.SIGKILL)
	}
	m.mu.Unlock()
}

// signals handles SIGINT/SIGTERM (graceful stop, then at once) and SIGHUP
// (rolling restart).
func (m *Master) signals() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case s := <-ch:
			switch s {
			case syscall.SIGHUP:
				m.log.Info("SIGHUP: rolling restart")
				go m.RollingRestart(context.Background())
			default:
				if m.beginStopBySignal() {
					m.log.Info("signal: graceful stop", "signal", s, "timeout", m.cfg.StopTimeout)
					go m.Stop(context.Background())
				} else {
					m.log.Warn("second signal: stopping at once", "signal", s)
					m.Kill()
				}
			}
		case <-m.done:
			return
		}
	}
}

// beginStopBySignal reports whether no stop had begun before.
func (m *Master) beginStopBySignal() bool {
	select {
	case <-m.stopCh:
		return false
	default:
		return true
	}
}
