package master

import (
	"strconv"
	"time"
)

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
