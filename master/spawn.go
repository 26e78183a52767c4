package master

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/internal/xtime"
)

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

// spawn starts the child of slot (already marked used): a worker and its
// watchers, or the auxiliary process whose slot it is (proc.SlotRole). Every
// child is Config.Exe (the binary on disk now) with its role's environment and the
// descriptors of internal/proc; only a worker gets the listener.
func (m *Master) spawn(slot int) (*handle, error) {
	role := proc.SlotRole(slot, len(m.blocks))
	if role != proc.RoleWorker && m.isStopping() {
		return nil, ErrStopped // it would not be stopped after the workers
	}
	m.mu.Lock()
	if m.held {
		m.mu.Unlock()
		return nil, ErrUpgrading // the next image spawns it
	}
	m.spawning++ // Freeze waits until the child is recorded
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.spawning--
		m.mu.Unlock()
	}()
	b := &m.blocks[slot]
	b.Reset(m.cfg.ReplaceTimeout)
	if role == proc.RoleWorker {
		b.SetRequestLimit(m.cfg.requestLimit()) // before the spawn: the worker reads it when it joins
	}
	cmd := exec.Command(m.cfg.Exe, m.cfg.Args[1:]...)
	cmd.Args[0] = m.cfg.Args[0]
	cmd.Env = proc.ChildEnv(m.cfg.Env, role, slot, os.Getpid())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	ln := m.cfg.Listener
	if role != proc.RoleWorker {
		ln = nil // fd 3 closed: see the package doc's Caveats
	} else if m.gomaxprocs != "" {
		cmd.Env = append(cmd.Env, m.gomaxprocs)
	}
	cmd.ExtraFiles = []*os.File{proc.ListenerFD - 3: ln, proc.ArenaFD - 3: m.cfg.Arena.File(), proc.DeathFD - 3: m.deathR}
	err := cmd.Start()
	// Whatever Start did to the descriptors, the shared description must stay
	// non-blocking for every process (see internal/proc).
	if nbErr := proc.SetNonblock(m.lnFd); nbErr != nil && err == nil {
		m.log.Error("listener: cannot restore non-blocking mode", "err", nbErr)
	}
	if err != nil {
		return nil, fmt.Errorf("master: spawn %v in slot %d: %w", role, slot, err)
	}
	h := &handle{role: role, pid: cmd.Process.Pid, slot: slot, proc: cmd.Process, started: time.Now(), block: b,
		changed: make(chan struct{}), exited: make(chan struct{}), reaped: make(chan struct{}), watched: make(chan struct{})}
	if role != proc.RoleWorker {
		m.mu.Lock()
		m.aux[slot].h = h
		m.mu.Unlock()
		close(h.watched) // no control block to follow
		m.log.Info("auxiliary process started", "process", role, "pid", h.pid, "slot", slot)
		m.emit(EventAuxForked, h, nil)
		go m.reap(h)
		return h, nil
	}
	m.mu.Lock()
	m.byPid[h.pid] = h
	if m.stopping {
		// A stop began while it started: it must not outlive the stop's drain.
		h.proc.Signal(syscall.SIGKILL)
	}
	m.mu.Unlock()
	m.writePid("worker", h.pid)
	m.emit(EventForked, h, nil)
	go m.reap(h)
	m.watchers.Add(1)
	go m.watch(h, proc.StateForked)
	return h, nil
}

// reap waits for the process, releases its arena slot at once, and decides
// what its death means: a kept child (a worker that listened, an auxiliary
// process that was ready) is respawned in its slot after its crash
// back-off, unless a stop began.
func (m *Master) reap(h *handle) {
	err := waitProcess(h.proc)
	if rerr := m.cfg.Arena.ReleaseSlot(h.slot); rerr != nil {
		m.log.Error("release slot", "slot", h.slot, "err", rerr)
	}
	worker := h.role == proc.RoleWorker
	if worker {
		m.removePid("worker", h.pid)
	}
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
	died, crashes, backoffMax := EventDied, &m.crashes, m.cfg.CrashBackoffMax
	if worker {
		delete(m.byPid, h.pid)
	} else {
		a := m.aux[h.slot]
		a.h = nil
		died, crashes, backoffMax = EventAuxDied, &a.crashes, a.spec.CrashBackoffMax
	}
	if !respawn {
		m.freeSlotLocked(h.slot)
	}
	h.notifyLocked()
	var delay time.Duration
	if respawn {
		delay = crashes.next(time.Now(), backoffMax)
	}
	last := worker && len(m.byPid) == 0 && m.stopping // the auxiliary processes stop after the last worker
	m.mu.Unlock()
	// The event goes out before exited closes: whatever waits for this death
	// (the death queue's next replacement) comes after it in the event order.
	m.emit(died, h, err)
	close(h.exited)
	switch {
	case !worker && respawn:
		m.log.Error("auxiliary process died; restarting it", "process", h.role, "pid", h.pid, "slot", h.slot, "err", err, "delay", delay)
		go m.respawn(h.slot, delay)
		return
	case !worker:
		m.log.Info("auxiliary process exited", "process", h.role, "pid", h.pid, "slot", h.slot, "err", err)
		return
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

// waitProcess waits for the child p and returns what exec.Cmd.Wait would: nil
// for a zero exit status, an *exec.ExitError otherwise ("exit status 1",
// "signal: killed"). An adopted child that was reaped already (by the
// previous image, between its handover and its execve) returns the wait's
// error (ECHILD): it is gone all the same.
func waitProcess(p *os.Process) error {
	st, err := p.Wait()
	if err != nil {
		return err
	}
	if !st.Success() {
		return &exec.ExitError{ProcessState: st}
	}
	return nil
}

// crashBackoff is the back-off before respawning a child that crashed:
// none for a lone crash, then 100 ms growing ×1.5 per crash in a row
// (crashes less than max plus the last delay apart), capped at max. The
// workers share one; each auxiliary process has its own.
type crashBackoff struct {
	last time.Time       // the last crash
	b    backoff.Backoff // the crashes in a row after the first
}

// crashBackoffFirst is the delay after the second crash in a row.
const crashBackoffFirst = 100 * time.Millisecond

// next returns the delay before respawning the child that crashed at now.
// Called with Master.mu held.
func (c *crashBackoff) next(now time.Time, max time.Duration) time.Duration {
	c.b.First, c.b.Factor, c.b.Max = crashBackoffFirst, 1.5, max
	var d time.Duration
	if c.last.IsZero() || now.Sub(c.last) > max+c.b.Last() {
		c.b.Reset() // a lone crash: at once
	} else {
		d = c.b.Next()
	}
	c.last = now
	return d
}

// freeSlotLocked makes slot free for a worker again; the master's and the
// auxiliary slots stay reserved. Called with mu held.
func (m *Master) freeSlotLocked(slot int) {
	if proc.SlotRole(slot, len(m.slotUsed)) == proc.RoleWorker {
		m.slotUsed[slot] = false
	}
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

// respawn fills slot (marked used by the caller) again after delay, with
// its worker or its auxiliary process; the new child is kept too, so a
// crash loop goes on being backed off rather than shrinking the cluster.
//
// A spawn that fails (fork/exec out of descriptors or memory) is retried
// until the slot is filled or a stop begins, after a back-off of
// respawnRetryFirst growing ×2 up to CrashBackoffMax (an auxiliary
// process's own): the slot stays reserved meanwhile, Respawning lists it
// (the monitor's /status shows it) and every failed attempt is logged and
// emitted as "respawn-failure".
func (m *Master) respawn(slot int, delay time.Duration) {
	retry := backoff.Backoff{First: respawnRetryFirst, Factor: 2, Max: m.cfg.CrashBackoffMax}
	if a := m.auxOf(slot); a != nil {
		retry.Max = a.spec.CrashBackoffMax
	}
	for attempt := 1; ; attempt++ {
		xtime.Sleep(m.stopCh, delay) // a stop is seen below
		m.mu.Lock()
		stopping := m.stopping
		skip := stopping || m.respawnSkipLocked(slot) // scaled down since: the slot is not needed
		if skip {
			m.freeSlotLocked(slot)
			delete(m.pending, slot)
		}
		m.mu.Unlock()
		if skip {
			if !stopping {
				m.log.Info("lost worker not respawned: the cluster has its target of workers", "slot", slot)
			}
			return
		}
		h, err := m.spawn(slot)
		if errors.Is(err, ErrStopped) {
			continue // an auxiliary process's spawn saw the stop: the next pass returns
		}
		if errors.Is(err, ErrUpgrading) {
			delay = heldRetry // held for an upgrade: the image after it respawns the slot, or this one after a failed exec
			continue
		}
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
		delay = retry.Next()
		m.mu.Lock()
		m.pending[slot] = Respawn{Slot: slot, Attempts: attempt, Err: err.Error(), Since: m.pendingSince(slot), Next: time.Now().Add(delay)}
		m.mu.Unlock()
		m.log.Error("respawn failed; the cluster is one "+proc.SlotRole(slot, len(m.blocks)).String()+" short until it succeeds",
			"slot", slot, "attempt", attempt, "retry-in", delay, "err", err)
		m.emitSlot(EventRespawnFailure, slot, err)
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

// killAndReap kills h and waits until it is reaped.
func (m *Master) killAndReap(h *handle) {
	h.proc.Signal(syscall.SIGKILL)
	<-h.exited
}
