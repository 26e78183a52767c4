package master

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

// The elastic worker count (see the package doc's "Scaling").
//
// The target (Master.target, under mu) is the number of kept workers the
// master keeps: Start sets it to Config.Workers (Adopt to the Workers its
// caller hands over), Scale changes it. Every path that adds a worker obeys
// it: a crashed worker's respawn skips its slot when the kept workers (and
// the ones a scale-up is warming) already reach the target; a replacement
// is one for one and leaves the count alone. A scale request runs on the
// death queue, after the replacements queued before it, one at a time with
// them, so a rolling restart and a scale never interleave: scaling up starts
// one worker at a time the guarded way (successor-style: warmed up on its
// private address, listening, else killed and retried), scaling down tells
// the victims to drain (old) and lets them go.

// Scaling is the elastic worker count as Master.Scaling reports it (the
// master's "scale" status, /status, the dashboard).
type Scaling struct {
	Target  int `json:"target"`  // the workers the master keeps (Config.Workers, then Scale's)
	Workers int `json:"workers"` // the kept workers now: serving, paused or starting, not old
	Max     int `json:"max"`     // the ceiling (Config.MaxWorkers, bounded by the arena)
}

// Target returns the number of workers the master keeps: Config.Workers
// until a Scale changes it.
func (m *Master) Target() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.target
}

// MaxWorkers returns the ceiling of Scale: Config.MaxWorkers, at most half
// the arena's worker slots (the other half is room for successors and
// draining workers), and never below Config.Workers. It is fixed at Start.
func (m *Master) MaxWorkers() int { return m.ceiling }

// Scaling returns the target, the kept workers now and the ceiling.
func (m *Master) Scaling() Scaling {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Scaling{Target: m.target, Workers: m.keptLocked(), Max: m.ceiling}
}

// Scale sets the target worker count to n and waits until the cluster has
// it, or ctx ends (the scale goes on then). Scaling up starts the new
// workers one at a time as successors are started: each warms up on its
// private address before it accepts on the shared socket, and one that
// fails is killed and retried (ReplaceRetries, with back-off); Scale
// returns the error wrapping ErrScaleFailed when none came up, the workers
// that did are kept. Scaling down tells the oldest workers to drain (one
// still starting, then a paused one first: they serve nothing; a starting
// one's warm-up is ended by SIGTERM): each stops accepting, finishes its
// in-flight requests within StopTimeout and exits, escalated to SIGTERM
// past StopTimeout and SIGKILL past as long again, as a dismissed worker's
// drain; Scale returns once they are gone.
//
// The request runs on the death queue, after the replacements queued before
// it (a rolling restart's: Scale during a rolling restart waits for it). n
// below 1 returns an error wrapping ErrScaleRange, above MaxWorkers one
// wrapping ErrAboveCeiling, and nothing changes; during an in-place upgrade
// (Freeze, or an adopting image until UpgradeEnded) ErrUpgrading; before
// WaitUp succeeded ErrWrongState; during a stop ErrStopped. EventScale is
// emitted when the target changes (Event.Workers: the new one). The
// signals SIGTTIN and SIGTTOU (HandleSignals) scale by +1 and −1.
func (m *Master) Scale(ctx context.Context, n int) error {
	return m.scaleTo(ctx, func(int) int { return n })
}

// scaleTo sets the target to to(the current target), as Scale does.
func (m *Master) scaleTo(ctx context.Context, to func(cur int) int) error {
	done, err := m.beginScale(to)
	if err != nil {
		return err
	}
	return m.waitScale(ctx, done)
}

// beginScale checks and sets the new target to(the current target) and
// queues the scale request; waitScale waits for its outcome.
func (m *Master) beginScale(to func(cur int) int) (<-chan scaleResult, error) {
	if !m.started.Load() {
		return nil, errStarting
	}
	m.mu.Lock()
	n := to(m.target)
	var err error
	switch {
	case m.stopping:
		err = ErrStopped
	case m.frozen || m.adopting:
		err = ErrUpgrading
	case n < 1:
		err = fmt.Errorf("%w: %d workers asked; at least 1", ErrScaleRange, n)
	case n > m.ceiling:
		err = fmt.Errorf("%w: %d workers asked; the ceiling is %d (Config.MaxWorkers, fixed when the arena was made)", ErrAboveCeiling, n, m.ceiling)
	}
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	prev := m.target
	m.target = n
	done := make(chan scaleResult, 1)
	m.queue = append(m.queue, request{scale: done}) // no Reason: a scale request replaces no worker
	m.mu.Unlock()
	m.wakeQueue()
	if n != prev {
		m.log.Info("scaling", "from", prev, "to", n)
		m.emitScale(n)
	}
	return done, nil
}

// waitScale waits until the scale request that done answers was carried
// out: new workers listening, the victims of a scale-down gone.
func (m *Master) waitScale(ctx context.Context, done <-chan scaleResult) error {
	var res scaleResult
	select {
	case res = <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if res.err != nil {
		return res.err
	}
	for _, h := range res.victims {
		select {
		case <-h.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// scaleResult is what a scale request did: the error of a scale-up that
// failed, the workers told to drain.
type scaleResult struct {
	err     error
	victims []*handle
}

// wakeQueue wakes the death queue.
func (m *Master) wakeQueue() {
	select {
	case m.qWake <- struct{}{}:
	default:
	}
}

// reconcile brings the kept workers to the target: the death queue's step
// for a scale request.
func (m *Master) reconcile() scaleResult {
	for {
		m.mu.Lock()
		stopping, have, target := m.stopping, m.keptLocked(), m.target
		if !stopping && have < target {
			m.scaleUp++ // a respawn meanwhile counts it
		}
		m.mu.Unlock()
		if stopping {
			return scaleResult{err: ErrStopped}
		}
		if have >= target {
			break
		}
		h, err := m.startReady("new worker failed; killing it")
		m.mu.Lock()
		m.scaleUp--
		if err == nil {
			h.keep = true
		}
		m.mu.Unlock()
		if err != nil {
			if !errors.Is(err, ErrStopped) {
				err = fmt.Errorf("%w: %d of %d workers: %w", ErrScaleFailed, have, target, err)
				m.log.Error("scaling up failed", "workers", have, "target", target, "err", err)
			}
			return scaleResult{err: err}
		}
		m.log.Info("scaled up", "worker", h.pid, "slot", h.slot, "workers", have+1, "target", target)
	}
	m.mu.Lock()
	victims := m.victimsLocked(m.keptLocked() - m.target)
	for _, h := range victims {
		h.state, h.keep = Old, false
		h.notifyLocked()
	}
	m.mu.Unlock()
	for _, h := range victims {
		m.log.Info("scaling down: draining", "worker", h.pid, "slot", h.slot, "ready", h.ready)
		m.emit(EventOld, h, nil)
		h.block.SetDrainDeadline(m.cfg.StopTimeout)
		h.block.SetWant(proc.WantDrain)
		if !h.ready {
			// Still starting (a crash's respawn): it serves nothing yet, and
			// its drain would begin only once it listens. SIGTERM ends its
			// warm-up without joining the socket.
			h.proc.Signal(syscall.SIGTERM)
		}
		go m.dismiss(h, m.cfg.StopTimeout)
	}
	return scaleResult{victims: victims}
}

// keptLocked counts the kept workers: those the master respawns if they
// die (serving, paused, or a respawn starting), not the old ones nor a
// successor not ready yet. Called with mu held.
func (m *Master) keptLocked() int {
	n := 0
	for _, h := range m.byPid {
		if h.keep && h.state != Old && h.state != Died {
			n++
		}
	}
	return n
}

// victimsLocked picks n kept workers to take away on a scale-down: first
// one still starting (a crash's respawn: it serves nothing yet; reconcile
// ends its warm-up), then a paused one (it serves nothing), then the
// oldest (gunicorn's choice: the longest-running worker has the most grown
// heap and is the nearest to its MaxAge replacement; the newest ones are
// the ones a recent rolling restart or deploy made), and one queued for a
// replacement last (the replacement would fail on an old worker). Called
// with mu held.
func (m *Master) victimsLocked(n int) []*handle {
	if n <= 0 {
		return nil
	}
	var cands []*handle
	for _, h := range m.byPid {
		if h.keep && h.state != Old && h.state != Died {
			cands = append(cands, h)
		}
	}
	rank := func(h *handle) int {
		switch {
		case !h.ready:
			return 0
		case h.state == Paused:
			return 1
		}
		return 2
	}
	slices.SortFunc(cands, func(a, b *handle) int {
		return cmp.Or(
			cmpBool(m.queued[a.pid], m.queued[b.pid]),
			rank(a)-rank(b),
			a.started.Compare(b.started),
			a.pid-b.pid)
	})
	return cands[:min(n, len(cands))]
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// respawnSkipLocked reports whether a respawn of a worker's slot is not
// needed: the kept workers, with those a scale-up is starting, reach the
// target already (a scale-down since the crash). Called with mu held.
func (m *Master) respawnSkipLocked(slot int) bool {
	return proc.SlotRole(slot, len(m.slotUsed)) == proc.RoleWorker && m.keptLocked()+m.scaleUp >= m.target
}

// emitScale sends EventScale with the new target.
func (m *Master) emitScale(target int) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Kind: EventScale, Workers: target, Time: time.Now()})
	}
}

// scaleSignal handles SIGTTIN (+1) and SIGTTOU (−1): gunicorn's convention.
// The signal loop calls it: the new target is set before the next signal
// is handled (signals in a row count one each, in the order they are
// handled), and the scale's outcome is logged when it is known.
func (m *Master) scaleSignal(s syscall.Signal) {
	delta := 1
	if s == syscall.SIGTTOU {
		delta = -1
	}
	m.log.Info("signal: scaling", "signal", s, "by", delta)
	done, err := m.beginScale(func(cur int) int { return cur + delta })
	if err != nil {
		m.log.Error("scaling refused", "signal", s, "err", err)
		return
	}
	go func() {
		if err := m.waitScale(context.Background(), done); err != nil {
			m.log.Error("scaling failed", "signal", s, "err", err)
		}
	}()
}
