package master

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

// Done is closed once the master has stopped and every child is gone: every
// worker, then every auxiliary process.
func (m *Master) Done() <-chan struct{} { return m.done }

// Wait blocks until the master has stopped and every child is gone. After it
// returns the master no longer touches the arena: it may be closed.
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

// finish completes a stop once no worker is left: the auxiliary processes
// stop last.
func (m *Master) finish() {
	m.doneOnce.Do(func() {
		m.deathW.Close() // EOF for every child left: the auxiliary processes' signal to finish
		m.stopAux()
		m.deathR.Close()
		m.removePid("master", os.Getpid())
		close(m.done)
	})
}

// beginStop marks the master stopping; it reports whether it was the first.
func (m *Master) beginStop() (first bool) {
	m.stopOnce.Do(func() {
		first = true
		m.upMu.Lock() // not while WaitUp puts the cluster up
		m.up.Store(false)
		m.emit(EventDown, nil, nil)
		m.mu.Lock()
		m.stopping = true
		empty := len(m.byPid) == 0
		m.mu.Unlock()
		m.upMu.Unlock()
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
		h.proc.Signal(syscall.SIGKILL)
	}
	m.mu.Unlock()
}

// notifySignals subscribes to the master's signals; goUp calls it before it
// says the cluster is up, and signals runs on the channel: a signal sent as
// soon as the cluster is up (a test, a deploy script reading READY) must
// find the handler in place (a SIGUSR2 before it would be lost, a SIGHUP or
// SIGTERM would end the process).
func (m *Master) notifySignals() chan os.Signal {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU)
	return ch
}

// signals handles SIGINT/SIGTERM (graceful stop, then at once), SIGHUP
// (rolling restart), SIGUSR2 (Config.Upgrade) and SIGTTIN/SIGTTOU (one
// worker more or less: Scale).
func (m *Master) signals(ch chan os.Signal) {
	defer signal.Stop(ch)
	for {
		select {
		case s := <-ch:
			switch s {
			case syscall.SIGHUP:
				m.log.Info("SIGHUP: rolling restart")
				go m.RollingRestart(context.Background())
			case syscall.SIGTTIN, syscall.SIGTTOU:
				m.scaleSignal(s.(syscall.Signal)) // sets the target at once; waits in a goroutine
			case syscall.SIGUSR2:
				if m.cfg.Upgrade == nil {
					m.log.Warn("SIGUSR2: no in-place upgrade configured (Config.Upgrade); ignored")
					continue
				}
				m.log.Info("SIGUSR2: in-place upgrade")
				go func() {
					if err := m.cfg.Upgrade(context.Background()); err != nil {
						m.log.Error("in-place upgrade failed; the cluster runs on as it was", "err", err)
					}
				}()
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
