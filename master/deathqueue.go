package master

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/internal/xtime"
)

// Replace queues worker pid for replacement through the death queue and
// returns at once: a successor is started, and only once it listens and has
// warmed up is the old worker told to drain. A pid already queued (or being
// replaced) is ignored.
func (m *Master) Replace(pid int) error {
	if _, err := m.lookup(pid); err != nil {
		return err
	}
	m.enqueue(pid, ReasonRequested, "", nil)
	return nil
}

// RollingRestart replaces every active worker, one at a time through the
// death queue, and waits until each is replaced or ctx ends. It returns the
// joined errors of the replacements that failed (their old workers keep
// serving). The master's pid never changes. EventRollingRestart is emitted
// when it begins, EventRollingRestartDone (Err: what it returns) when it
// returns. With Config.Check set, the binary at Exe is checked first: a
// failure emits EventCheckFailed and returns the error (wrapping the
// check's) without replacing any worker.
func (m *Master) RollingRestart(ctx context.Context) (err error) {
	if !m.started.Load() {
		return errStarting
	}
	m.mu.Lock()
	if m.frozen {
		m.mu.Unlock()
		return ErrUpgrading
	}
	var pids []int
	for pid, h := range m.byPid {
		if h.keep && (h.state == Active || h.state == Warming || h.state == Forked) {
			pids = append(pids, pid)
		}
	}
	m.mu.Unlock()
	m.emit(EventRollingRestart, nil, nil)
	defer func() { m.emit(EventRollingRestartDone, nil, err) }()
	if err := m.checkExe(ctx); err != nil {
		return err
	}
	return m.replaceAll(ctx, pids, ReasonRollingRestart)
}

// ReplaceWorkers replaces the workers pids, one at a time through the death
// queue, as RollingRestart does every worker, and waits until each is
// replaced or ctx ends (an in-place upgrade replaces the workers of the
// build it upgraded from, or on the way back those of the failed build). It
// emits no rolling-restart event. Unknown pids are skipped.
func (m *Master) ReplaceWorkers(ctx context.Context, pids []int) error {
	if !m.started.Load() {
		return errStarting
	}
	return m.replaceAll(ctx, pids, ReasonUpgrade)
}

func (m *Master) replaceAll(ctx context.Context, pids []int, why Reason) error {
	var waits []chan error
	for _, pid := range pids {
		ch := make(chan error, 1)
		if m.enqueue(pid, why, "", ch) {
			waits = append(waits, ch)
		}
	}
	var errs []error
	for _, ch := range waits {
		select {
		case err := <-ch:
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// checkExe runs Config.Check on the binary every successor will run, before
// the first one starts; a failure is logged and emitted (EventCheckFailed),
// and refuses the restart.
func (m *Master) checkExe(ctx context.Context) error {
	if m.cfg.Check == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.ReplaceTimeout)
	defer cancel()
	if err := m.cfg.Check(cctx, m.cfg.Exe); err != nil {
		err = fmt.Errorf("master: rolling restart refused, every worker kept: %w", err)
		m.log.Error("the new binary failed its check: nothing replaced", "exe", m.cfg.Exe, "err", err)
		m.emit(EventCheckFailed, nil, err)
		return err
	}
	m.log.Info("the new binary passed its check", "exe", m.cfg.Exe)
	return nil
}

// enqueue appends a replacement request unless pid is already queued; it
// reports whether it did.
func (m *Master) enqueue(pid int, why Reason, detail string, done chan error) bool {
	m.mu.Lock()
	if m.stopping || m.frozen || m.queued[pid] {
		m.mu.Unlock()
		return false
	}
	m.queued[pid] = true
	m.queue = append(m.queue, request{pid: pid, reason: why, detail: detail, done: done})
	m.mu.Unlock()
	m.log.Info("queued for replacement", "worker", pid, "reason", why, "detail", detail)
	select {
	case m.qWake <- struct{}{}:
	default:
	}
	return true
}

// deathQueue runs replacements FIFO, one at a time.
func (m *Master) deathQueue() {
	defer m.wg.Done()
	fails := backoff.Backoff{First: time.Second, Factor: 1.5, Max: m.cfg.CrashBackoffMax}
	for {
		m.mu.Lock()
		if m.stopping {
			for _, r := range m.queue {
				if r.done != nil {
					r.done <- ErrStopped
				}
				if r.scale != nil {
					r.scale <- scaleResult{err: ErrStopped}
				}
			}
			m.queue = nil
			m.mu.Unlock()
			return
		}
		if len(m.queue) == 0 {
			m.mu.Unlock()
			select {
			case <-m.qWake:
			case <-m.stopCh:
			}
			continue
		}
		r := m.queue[0]
		m.queue = m.queue[1:]
		if r.scale != nil {
			m.scaling = true // Freeze waits for it
			m.mu.Unlock()
			res := m.reconcile()
			m.mu.Lock()
			m.scaling = false
			m.mu.Unlock()
			r.scale <- res
			continue
		}
		m.current = r.pid
		m.mu.Unlock()

		err := m.replace(r)

		m.mu.Lock()
		m.current = 0
		delete(m.queued, r.pid)
		m.mu.Unlock()
		if r.done != nil {
			r.done <- err
		}
		// After a failed replacement the queue backs off before the next
		// one (×1.5 per failure in a row, from 1 s, capped): a ShouldKill or
		// memory limit that keeps asking must not turn into a loop of
		// failing successors.
		if errors.Is(err, ErrReplaceFailed) {
			d := fails.Next()
			m.log.Warn("death queue backs off after a failed replacement", "delay", d)
			xtime.Sleep(m.stopCh, d)
		} else if err == nil {
			fails.Reset()
		}
	}
}

// replace is one death: successor first (guarded, with retries), then the
// old worker's drain (guarded, escalating to SIGTERM and SIGKILL).
func (m *Master) replace(r request) error {
	old, err := m.lookup(r.pid)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if old.state == Old || old.state == Died || old.state == Paused {
		st := old.state
		m.mu.Unlock()
		return fmt.Errorf("%w: worker %d is %v", ErrWrongState, r.pid, st)
	}
	m.mu.Unlock()
	m.log.Info("replacing worker", "worker", r.pid, "reason", r.reason, "detail", r.detail)

	// Kill a successor that fails, never the old worker: it keeps serving.
	succ, err := m.startReady("successor failed; killing it, old worker keeps serving", "old", r.pid)
	if errors.Is(err, ErrStopped) {
		return err
	}
	if succ == nil {
		err := fmt.Errorf("%w: worker %d: %w", ErrReplaceFailed, r.pid, err)
		m.emit(EventReplaceFailure, old, err)
		m.log.Error("replacement failed", "worker", r.pid, "err", err)
		m.mu.Lock()
		dead := old.state == Died
		m.mu.Unlock()
		if dead {
			// The old worker died meanwhile; reap did not respawn it (it was
			// being replaced), so the cluster is one short: fill a slot.
			go m.respawnFree(retryDelay(m.cfg.ReplaceRetries))
		}
		return err
	}

	m.mu.Lock()
	succ.keep = true
	m.replaced[r.reason]++
	dead := old.state == Died
	if !dead {
		old.state, old.keep = Old, false
		old.notifyLocked()
	}
	m.mu.Unlock()
	if dead {
		return nil // it died while its successor came up: nothing to dismiss
	}
	m.emitReason(EventOld, old, r.reason)
	old.block.SetDrainDeadline(m.cfg.ReplaceTimeout)
	old.block.SetWant(proc.WantDrain)
	m.dismiss(old, m.cfg.ReplaceTimeout)
	return nil
}

// startReady spawns a worker in a free slot and waits until it is ready
// (listening and warmed up), within ReplaceTimeout; one that fails is
// killed (logged as failed, with attrs) and another is tried after a
// back-off, ReplaceRetries times. It returns the last failure's error when
// none came up, ErrStopped when a stop began. The new worker is not kept:
// the caller decides.
func (m *Master) startReady(failed string, attrs ...any) (*handle, error) {
	var lastErr error
	for attempt := 0; attempt <= m.cfg.ReplaceRetries; attempt++ {
		if attempt > 0 {
			if !xtime.Sleep(m.stopCh, retryDelay(attempt-1)) {
				return nil, ErrStopped
			}
		}
		h, err := m.spawnFree()
		if err != nil {
			lastErr = err
			continue
		}
		ctx, cancel := m.stopContext()
		err = m.waitReady(ctx, h)
		cancel()
		if err == nil {
			return h, nil
		}
		m.log.Warn(failed, append(attrs[:len(attrs):len(attrs)], "worker", h.pid, "attempt", attempt+1, "err", err)...)
		m.killAndReap(h)
		lastErr = err
		if m.isStopping() {
			return nil, ErrStopped
		}
	}
	return nil, lastErr
}

// dismiss waits for the old worker to exit, escalating to SIGTERM past
// after (ReplaceTimeout for a replaced worker, StopTimeout for a scale-down's)
// and to SIGKILL after as long again.
//
// A worker that is not heartbeating cannot drain: one that neither
// acknowledged the drain (its state draining) nor sent a heartbeat within
// the unresponsive grace (2 × HeartbeatInterval, at least 1 s, at most
// ReplaceTimeout) is SIGSTOPped, hung or dying, and its open connections
// would hang with it for 2 × ReplaceTimeout: it gets SIGKILL at once (its
// successor already serves), emitted as "unresponsive" then "sigkill".
func (m *Master) dismiss(old *handle, after time.Duration) {
	if m.killIfUnresponsive(old) {
		select {
		case <-old.exited:
		case <-m.killCh:
		}
		return
	}
	steps := []struct {
		sig  syscall.Signal
		kind Kind
	}{{syscall.SIGTERM, EventSigTerm}, {syscall.SIGKILL, EventSigKill}}
	for _, s := range steps {
		select {
		case <-old.exited:
			return
		case <-time.After(after):
		case <-m.killCh:
			return
		}
		m.log.Warn("old worker did not exit in time", "worker", old.pid, "signal", s.sig)
		m.emit(s.kind, old, nil)
		old.proc.Signal(s.sig)
	}
	<-old.exited
}

// killIfUnresponsive waits, after h was told to drain (dismissed, or a
// stop), until h acknowledges the drain, heartbeats or exits; if the grace
// passes with none of these it sends h SIGKILL, emitted as "unresponsive"
// then "sigkill", and reports true.
func (m *Master) killIfUnresponsive(h *handle) bool {
	if !m.unresponsive(h) {
		return false
	}
	m.mu.Lock()
	again := h.killedUnresponsive // a dismissal and a stop may both judge it
	h.killedUnresponsive = true
	m.mu.Unlock()
	if again {
		return true
	}
	m.log.Warn("worker told to drain does not drain and sends no heartbeat: killing it", "worker", h.pid,
		"grace", m.unresponsiveGrace())
	m.emit(EventUnresponsive, h, nil)
	m.emit(EventSigKill, h, nil)
	h.proc.Signal(syscall.SIGKILL)
	return true
}

// unresponsiveGrace is how long a dismissed worker may take to acknowledge
// the drain while sending no heartbeat.
func (m *Master) unresponsiveGrace() time.Duration {
	return min(max(2*m.cfg.HeartbeatInterval, time.Second), m.cfg.ReplaceTimeout)
}

// unresponsive waits until the dismissed worker acknowledges the drain or
// exits (false), or the grace passes with neither that nor a heartbeat
// since the dismissal began (true).
func (m *Master) unresponsive(old *handle) bool {
	grace := m.unresponsiveGrace()
	since := time.Now()
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		m.mu.Lock()
		ack := old.drainAck || old.state == Died
		ch := old.changed
		m.mu.Unlock()
		if ack {
			return false
		}
		select {
		case <-ch:
			continue
		case <-old.exited:
			return false
		case <-m.killCh:
			return false
		case <-t.C:
		}
		// The latest heartbeat, read now: a heartbeat does not close
		// changed, so one taken during the grace is only seen here. What
		// counts is when the worker took it (its At), not when this
		// master read it: a loaded master may read, after the grace began,
		// a heartbeat written just before the worker was stopped.
		m.mu.Lock()
		taken := heartbeatTaken(old)
		m.mu.Unlock()
		if taken.After(since) {
			// Alive (it heartbeats): only slow to acknowledge. The
			// ordinary escalation applies.
			return false
		}
		return true
	}
}

func (m *Master) isStopping() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopping
}

// stopContext returns a context cancelled when a stop begins.
func (m *Master) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-m.stopCh:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

// heartbeatTaken returns when h's latest heartbeat was taken, by the
// worker's clock (the same machine's), or when the master read it for a
// heartbeat without a time; zero before the first. Called with mu held.
func heartbeatTaken(h *handle) time.Time {
	if h.hb.At != 0 {
		return time.Unix(0, h.hb.At)
	}
	return h.lastHB
}
