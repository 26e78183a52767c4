package master

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

// Aux describes an auxiliary process of the cluster: this binary re-executed
// in the role's fixed slot of the process table (Role.Slot: the last one),
// with the role's environment, the arena (fd 4) and the death pipe (fd 5)
// of internal/proc, not the listener. The master supervises it through the
// workers' path: spawned before the workers (Start waits until it is
// Ready), reaped at once (its slot released), restarted after the crash
// back-off when it dies (EventAuxDied, then EventAuxForked; a spawn that
// fails is retried and listed by Respawning), and stopped after the last
// worker: the master closes the death pipe's write end, which the process
// reads as its signal to finish, and kills it past StopTimeout.
//
// The roles are internal/proc's (cluster2 registers its cache manager,
// proc.RoleCacheManager); an Aux may be copied.
type Aux struct {
	// Role is the process's role; it decides its slot and its environment.
	Role proc.Role

	// Ready, when set, reports whether the process is ready; Start polls it
	// (every 5 ms) after spawning the process and spawns no worker before it
	// is true (the cache manager: the space has a log writer). Nil: ready
	// once spawned.
	Ready func() bool

	// CrashBackoffMax caps its crash back-off (none for a lone crash, then
	// 100 ms ×1.5 per crash in a row, as the workers') and the delay between
	// retries of a spawn that failed. Default Config.CrashBackoffMax.
	CrashBackoffMax time.Duration

	// StopTimeout bounds its stop after the last worker: past it, it is
	// killed. Default DefaultAuxStopTimeout (10 s).
	StopTimeout time.Duration
}

// auxChild is the master's side of one auxiliary process; its fields are
// under Master.mu.
type auxChild struct {
	spec    Aux
	h       *handle // the live process; nil between a death and its respawn
	crashes crashBackoff
}

// auxReadyPoll is how often Start asks an auxiliary process's Ready.
const auxReadyPoll = 5 * time.Millisecond

// startAux spawns the auxiliary process a and waits until it is ready; from
// then on its death is a crash to respawn. It exiting first, or ctx ending,
// is an error (the caller aborts).
func (m *Master) startAux(ctx context.Context, a Aux) error {
	slot := a.Role.Slot(len(m.blocks))
	m.mu.Lock()
	m.aux[slot] = &auxChild{spec: a}
	m.mu.Unlock()
	h, err := m.spawn(slot)
	if err != nil {
		return err
	}
	for a.Ready != nil && !a.Ready() {
		select {
		case <-h.exited:
			return fmt.Errorf("%w: the %v (pid %d, slot %d) exited before it was ready", ErrStartFailed, a.Role, h.pid, slot)
		case <-ctx.Done():
			return fmt.Errorf("master: waiting for the %v (pid %d): %w", a.Role, h.pid, ctx.Err())
		case <-time.After(auxReadyPoll):
		}
	}
	m.mu.Lock()
	h.keep = h.state != Died // a death from now on is a crash to respawn
	died := h.state == Died
	m.mu.Unlock()
	if died {
		return fmt.Errorf("%w: the %v (pid %d, slot %d) exited when it was ready", ErrStartFailed, a.Role, h.pid, slot)
	}
	return nil
}

// AuxInfo describes one live auxiliary process for Auxiliary.
type AuxInfo struct {
	Role    proc.Role
	Pid     int
	Slot    int
	Started time.Time
}

// Auxiliary returns the live auxiliary processes, by slot: the master's
// view of its children besides the workers (Workers). One that died and is
// not respawned yet is missing (Respawning lists it while its spawn fails).
func (m *Master) Auxiliary() []AuxInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []AuxInfo
	for _, a := range m.aux {
		if h := a.h; h != nil {
			out = append(out, AuxInfo{Role: h.role, Pid: h.pid, Slot: h.slot, Started: h.started})
		}
	}
	slices.SortFunc(out, func(a, b AuxInfo) int { return a.Slot - b.Slot })
	return out
}

// auxOf returns the auxiliary process of slot, nil for a worker's slot.
func (m *Master) auxOf(slot int) *auxChild {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.aux[slot]
}

// stopAux stops the auxiliary processes once every worker is gone (finish,
// after closing the death pipe's write end: their signal to finish) and
// waits for each, killing one still alive past its StopTimeout.
func (m *Master) stopAux() {
	m.mu.Lock()
	var live []*auxChild
	for _, a := range m.aux {
		if a.h != nil {
			live = append(live, a)
		}
	}
	m.mu.Unlock()
	for _, a := range live {
		m.mu.Lock()
		h := a.h
		m.mu.Unlock()
		if h == nil {
			continue
		}
		select {
		case <-h.exited:
		case <-time.After(a.spec.StopTimeout):
			m.log.Warn("auxiliary process did not stop in time: killing it", "process", h.role, "pid", h.pid, "timeout", a.spec.StopTimeout)
			h.proc.Signal(syscall.SIGKILL)
			<-h.exited
		}
	}
}
