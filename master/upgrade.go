package master

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

// The master's part of an in-place upgrade (see the package doc's "Upgrading
// in place"): the image about to execve holds itself (Freeze) and hands its
// children over; the next image of the same process adopts them (Adopt).
// Everything else the master knows is in the arena already (the control
// blocks), or is the caller's (the descriptors, the arena's token).

// heldRetry is how often a respawn held by Freeze tries again: the held
// image either execs (the next one respawns the slot) or thaws.
const heldRetry = 100 * time.Millisecond

// freezePoll is how often Freeze looks whether the death queue is idle.
const freezePoll = 20 * time.Millisecond

// Freeze holds the master for an in-place upgrade and returns its live
// children, workers and auxiliary processes, by slot. It first refuses new
// replacements (Replace, RollingRestart, the nanny and ShouldKill:
// ErrUpgrading), then waits, at most until ctx ends, until no replacement
// runs or waits and no spawn is under way, and from then on spawns nothing
// (a crashed worker's respawn waits). What the children are cannot change
// after it returns, except by their deaths: a child that dies between Freeze
// and the execve is reaped by this image, and the next one finds it gone
// (its wait fails) and respawns its slot. Thaw undoes Freeze (the execve
// failed). Before WaitUp succeeded it returns ErrWrongState; during a stop
// ErrStopped; a second Freeze ErrUpgrading.
func (m *Master) Freeze(ctx context.Context) ([]proc.Child, error) {
	if !m.started.Load() {
		return nil, errStarting
	}
	m.mu.Lock()
	switch {
	case m.stopping:
		m.mu.Unlock()
		return nil, ErrStopped
	case m.frozen:
		m.mu.Unlock()
		return nil, ErrUpgrading
	}
	m.frozen = true
	m.mu.Unlock()
	for {
		m.mu.Lock()
		if m.stopping {
			m.frozen = false
			m.mu.Unlock()
			return nil, ErrStopped
		}
		if m.current == 0 && len(m.queue) == 0 && m.spawning == 0 && !m.scaling {
			m.held = true
			out := m.childrenLocked()
			m.mu.Unlock()
			m.emit(EventUpgrade, nil, nil)
			return out, nil
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			m.Thaw()
			return nil, fmt.Errorf("master: waiting for the death queue to be idle: %w", ctx.Err())
		case <-time.After(freezePoll):
		}
	}
}

// Thaw ends what Freeze began: replacements and spawns go on.
func (m *Master) Thaw() {
	m.mu.Lock()
	m.frozen, m.held = false, false
	m.mu.Unlock()
}

// childrenLocked lists the live children. Called with mu held.
func (m *Master) childrenLocked() []proc.Child {
	var out []proc.Child
	for _, h := range m.byPid {
		if h.state != Died {
			out = append(out, proc.Child{Pid: h.pid, Slot: h.slot, Role: proc.RoleWorker, Started: h.started, Paused: h.state == Paused})
		}
	}
	for _, a := range m.aux {
		if h := a.h; h != nil && h.state != Died {
			out = append(out, proc.Child{Pid: h.pid, Slot: h.slot, Role: h.role, Started: h.started})
		}
	}
	slices.SortFunc(out, func(a, b proc.Child) int { return a.Slot - b.Slot })
	return out
}

// DeathPipe returns the death pipe's ends, for a handover: the read end every
// child holds, the write end only this process holds (children read EOF on
// the read end when it closes: their master is gone).
func (m *Master) DeathPipe() (r, w *os.File) { return m.deathR, m.deathW }

// Adopt makes a Master of the children the previous image of this process
// started (the handover of an in-place upgrade, or of the way back), with
// cfg as Start takes it: Listener and Arena are the handed-over ones, and
// deathR and deathW the handed-over death pipe. The children are still this
// process's: Adopt waits for each through a pidfd (os.FindProcess), follows
// each worker's control block from the state it is in (no start events are
// emitted again; EventAdopted is, for each worker), and takes each
// auxiliary process of cfg.Aux's roles as it is. A child that is gone (it
// died before the execve and the previous image reaped it) is a death like
// any other: its slot is respawned. cfg.Workers is the target (the
// previous image's, which its caller hands over: Scale's count survives the
// upgrade); slots short of it are filled,
// and an auxiliary role of cfg.Aux without a process is started (before
// Adopt returns, as Start does). The cluster is up when Adopt returns
// (EventUp): WaitUp returns nil at once. Scale returns ErrUpgrading until
// UpgradeEnded: the upgrade's replacements come first.
func Adopt(ctx context.Context, cfg Config, children []proc.Child, deathR, deathW *os.File) (*Master, error) {
	m, err := newMaster(ctx, cfg, deathR, deathW)
	if err != nil {
		return nil, err
	}
	m.upDone = make(chan struct{})
	close(m.upDone)
	m.adopting = true        // no Scale until the upgrade's replacements are over (UpgradeEnded)
	m.waitOnce.Do(func() {}) // WaitUp: up already
	var adopted []*handle
	workers := 0
	for _, c := range children {
		if c.Slot <= 0 || c.Slot >= len(m.blocks) || proc.SlotRole(c.Slot, len(m.blocks)) != c.Role || m.slotUsed[c.Slot] && c.Role == proc.RoleWorker {
			m.log.Error("handover: a child in a slot it cannot have; left alone", "pid", c.Pid, "slot", c.Slot, "role", c.Role)
			continue
		}
		p, err := os.FindProcess(c.Pid)
		if err != nil {
			m.log.Error("handover: cannot follow a child", "pid", c.Pid, "err", err)
			continue
		}
		h := &handle{role: c.Role, pid: c.Pid, slot: c.Slot, proc: p, started: c.Started, block: &m.blocks[c.Slot], keep: true,
			changed: make(chan struct{}), exited: make(chan struct{}), reaped: make(chan struct{}), watched: make(chan struct{})}
		if c.Role != proc.RoleWorker {
			spec, ok := m.auxSpec(c.Role)
			if !ok {
				m.log.Warn("handover: an auxiliary process this configuration does not run; stopping it", "pid", c.Pid, "process", c.Role)
				spec = Aux{Role: c.Role, CrashBackoffMax: m.cfg.CrashBackoffMax, StopTimeout: DefaultAuxStopTimeout}
				h.keep = false
				defer p.Signal(os.Interrupt)
			}
			h.state, h.ready = Active, true
			m.aux[c.Slot] = &auxChild{spec: spec, h: h}
			close(h.watched)
			adopted = append(adopted, h)
			continue
		}
		st := h.block.State()
		h.state, h.ready, h.progress = Active, true, progressWarmed
		switch st {
		case proc.StatePaused:
			h.state = Paused
		case proc.StateForked:
			h.state, h.ready, h.progress = Forked, false, progressForked
		case proc.StateWarming, proc.StateWarmed:
			h.state, h.ready, h.progress = Warming, false, progressWarming
		case proc.StateWarmFailed:
			h.state, h.ready, h.failed = Warming, false, true
		case proc.StateDraining, proc.StateStopped:
			h.state, h.keep, h.drainAck = Old, false, true
		}
		m.slotUsed[c.Slot] = true
		m.byPid[h.pid] = h
		adopted = append(adopted, h)
		if h.keep {
			workers++
		}
	}
	for _, h := range adopted {
		if h.role == proc.RoleWorker {
			m.emit(EventAdopted, h, nil)
			m.watchers.Add(1)
			go m.watch(h, h.block.State())
		} else {
			m.log.Info("auxiliary process adopted", "process", h.role, "pid", h.pid, "slot", h.slot)
		}
		go m.reap(h)
	}
	for _, a := range m.cfg.Aux {
		if slot := a.Role.Slot(len(m.blocks)); m.aux[slot] == nil {
			if err := m.startAux(ctx, a); err != nil {
				m.abort()
				return nil, err
			}
		}
	}
	if err := m.goUp(); err != nil {
		return nil, err
	}
	for range m.cfg.Workers - workers {
		go m.respawnFree(0) // the kept slots the previous image had lost
	}
	m.log.Info("cluster adopted", "workers", workers, "children", len(adopted), "want", m.cfg.Workers)
	return m, nil
}

// auxSpec returns cfg.Aux's entry for role.
func (m *Master) auxSpec(role proc.Role) (Aux, bool) {
	for _, a := range m.cfg.Aux {
		if a.Role == role {
			return a, true
		}
	}
	return Aux{}, false
}

// UpgradeEnded reports the end of an in-place upgrade as EventUpgradeDone:
// err nil when every worker runs the new build, else why not (the cluster
// runs on the binary it ran before).
// It ends an adopting image's hold on Scale.
func (m *Master) UpgradeEnded(err error) {
	m.mu.Lock()
	m.adopting = false
	m.mu.Unlock()
	m.emit(EventUpgradeDone, nil, err)
}
