package master

// Reason says why a worker is replaced through the death queue. Every
// request of the queue carries one; the master's own rules (Reason.Recycle)
// also emit EventRecycled with it when they queue a worker, and Replacements
// counts the replacements done, by reason (the monitor's
// cluster2_worker_replacements_total{reason}).
type Reason uint8

// The reasons of a replacement. The first ones are asked for from outside;
// from ReasonShouldKill on they are the master's own rules (recycling).
const (
	ReasonRequested      Reason = iota + 1 // Replace (an operator, the monitor's action)
	ReasonRollingRestart                   // RollingRestart, SIGHUP
	ReasonUpgrade                          // ReplaceWorkers: an in-place upgrade (or its way back)
	ReasonShouldKill                       // Config.ShouldKill judged a heartbeat (by default: MaxAge, bad GC)
	ReasonMemory                           // resident memory above Config.MemoryLimit
	ReasonNanny                            // no heartbeat for Config.NannyTolerance
	ReasonMaxRequests                      // served its request limit (Config.MaxRequests plus its jitter)
	ReasonHungRequests                     // Config.HungRequests requests past the server's RequestTimeout within HungWindow
)

// reasonNames is the one table of the reasons' names (the label of the
// replacements metric, the log's reason).
var reasonNames = [...]string{
	ReasonRequested:      "requested",
	ReasonRollingRestart: "rolling-restart",
	ReasonUpgrade:        "upgrade",
	ReasonShouldKill:     "should-kill",
	ReasonMemory:         "memory",
	ReasonNanny:          "nanny",
	ReasonMaxRequests:    "max-requests",
	ReasonHungRequests:   "hung-requests",
}

// Reasons lists every reason, in order.
func Reasons() []Reason {
	out := make([]Reason, 0, len(reasonNames)-1)
	for r := ReasonRequested; int(r) < len(reasonNames); r++ {
		out = append(out, r)
	}
	return out
}

func (r Reason) valid() bool { return r > 0 && int(r) < len(reasonNames) }

// String returns the reason's name: "requested", "max-requests", …; the
// zero Reason (an event that is no replacement) is "".
func (r Reason) String() string {
	if !r.valid() {
		return ""
	}
	return reasonNames[r]
}

// Recycle reports whether the reason is one of the master's own rules
// (ShouldKill, MemoryLimit, the nanny, MaxRequests, HungRequests) rather
// than a replacement asked for from outside: those are emitted as
// EventRecycled when the worker is queued.
func (r Reason) Recycle() bool { return r >= ReasonShouldKill && r.valid() }

// Replacements returns how many workers were replaced through the death
// queue since Start (a successor listening and the old worker told to
// drain), by reason; every reason is present.
func (m *Master) Replacements() map[Reason]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Reason]uint64, len(reasonNames)-1)
	for _, r := range Reasons() {
		out[r] = m.replaced[r]
	}
	return out
}

// recycle queues h for replacement by one of the master's own rules, if it
// is an active worker the master keeps (paused, old or guarded workers are
// not recycled), and emits EventRecycled when it was queued: the one place
// that makes that event.
func (m *Master) recycle(h *handle, why Reason, detail string) {
	m.mu.Lock()
	active := h.state == Active && h.keep
	m.mu.Unlock()
	if active && m.enqueue(h.pid, why, detail, nil) {
		m.emitReason(EventRecycled, h, why)
	}
}
