package master

import (
	"context"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/worker"
)

// watch follows the worker's control block: state changes and heartbeats,
// and the nanny. It sleeps on the block's event, never polls faster than
// once a second. seen is the state the master knows already: forked for a
// spawned worker, what the block said for an adopted one.
func (m *Master) watch(h *handle, seen proc.State) {
	defer m.watchers.Done()
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
	// The worker wakes the block's event when its requests reach its limit
	// and at every hung request: those are conditions to wake on too, until
	// seen (a limit seen is judged again at every look: a worker paused
	// then, or whose replacement failed, is recycled later).
	limit := h.block.RequestLimit() // stored before the spawn, never changed
	limitSeen := false
	hung := hungWatch{seen: h.block.Hung()}
	wake := func() bool {
		return reaped() || limit > 0 && !limitSeen && h.block.Requests() >= limit ||
			h.block.Hung() != hung.seen
	}
	for {
		h.block.WaitMaster(seen, hbSeq, wake, time.Second)
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
		if n := h.block.Requests(); limit > 0 && n >= limit {
			limitSeen = true
			m.recycle(h, ReasonMaxRequests, fmt.Sprintf("%d requests served, limit %d", n, limit))
		}
		if n := hung.count(h.block.Hung(), m.cfg.HungWindow); m.cfg.HungRequests > 0 && n >= m.cfg.HungRequests {
			m.recycle(h, ReasonHungRequests, fmt.Sprintf("%d requests past the server's RequestTimeout within %v", n, m.cfg.HungWindow))
		}
		m.nanny(h)
	}
}

// hungWatch follows a worker's count of hung requests (the watcher's own):
// when each was seen, for the HungRequests rule.
type hungWatch struct {
	seen  uint64      // the count last seen
	times []time.Time // when the ones within the window were seen, oldest first
}

// count takes in the worker's count now and returns how many hung requests
// were seen within window (up to now). A jump of several is several seen
// now; at most maxHungTimes are kept.
func (w *hungWatch) count(now uint64, window time.Duration) int {
	t := time.Now()
	if now-w.seen > maxHungTimes && now > w.seen {
		w.seen = now - maxHungTimes
	}
	for ; w.seen < now; w.seen++ {
		w.times = append(w.times, t)
	}
	cut := 0
	for cut < len(w.times) && (t.Sub(w.times[cut]) > window || len(w.times)-cut > maxHungTimes) {
		cut++
	}
	w.times = w.times[cut:]
	return len(w.times)
}

// maxHungTimes bounds hungWatch's memory (HungRequests above it never
// trigger: Validate refuses them).
const maxHungTimes = 10000

// Progress of a worker's start events (handle.progress), and their kinds.
const (
	progressForked  = iota // EventForked (emitted by spawn)
	progressWarming        // EventWarming
	progressWarmed         // EventWarmUp
)

var startEvents = [...]Kind{progressForked: EventForked, progressWarming: EventWarming, progressWarmed: EventWarmUp}

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
	//
	// The same holds for a drain: a worker that listened drains before it
	// stops, and a short drain can pass draining between two looks; a stop
	// seen without it brings the draining event first. (A worker stopped
	// during its warm-up never listened and does not drain.)
	m.mu.Lock()
	prev, progress, ready, drainAck := h.state, h.progress, h.ready, h.drainAck
	m.mu.Unlock()
	var evs []Kind
	var err error
	catchUp := func(upTo int) {
		for p := progress + 1; p <= upTo; p++ {
			evs = append(evs, startEvents[p])
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
			evs = append(evs, EventResumed)
		} else {
			evs = append(evs, EventListening)
		}
	case proc.StatePaused:
		evs = []Kind{EventPaused}
	case proc.StateWarmFailed:
		catchUp(progressWarming)
		evs, err = append(evs, EventWarmUpFailure), warmUpError(h.block.Reason())
	case proc.StateDraining:
		evs = []Kind{EventDraining}
	case proc.StateStopped:
		if ready && !drainAck {
			evs = []Kind{EventDraining}
		}
	}
	for _, k := range evs {
		m.emit(k, h, err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	h.progress = progress
	if h.build == (Build{}) && st != proc.StateForked { // the worker stored it before its first state
		v, r, g := h.block.Build()
		h.build = Build{Version: v, Revision: r, GoVersion: g}
	}
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
		m.recycle(h, ReasonMemory, fmt.Sprintf("memory %d over limit %d", hb.RSS, m.cfg.MemoryLimit))
	case m.cfg.ShouldKill(hb):
		m.recycle(h, ReasonShouldKill, "")
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
		m.recycle(h, ReasonNanny, "no heartbeat for "+time.Since(last).Round(time.Millisecond).String())
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
