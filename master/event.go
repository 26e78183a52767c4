package master

import (
	"strconv"
	"time"
)

// Event is a lifecycle event. The master makes every one of them, except
// the ECV's marks (EventMarkUp, EventMarkDown), which the monitor makes: a
// worker's event has its Pid and Slot, an auxiliary process's too
// (EventAuxForked, EventAuxDied), a cluster event has Pid 0 (and
// EventRespawnFailure the Slot being refilled). A worker's start events come
// as the sequence forked, warming, warmup, listening (or warmup-failure after
// warming) for every worker; see the package doc. Config.OnEvent receives
// them in the master; the emitter publishes them to other processes under
// Name.
type Event struct {
	Kind Kind
	Pid  int   // the worker's (or auxiliary process's) pid, 0 for cluster events
	Slot int   // its slot (respawn-failure: the slot being refilled), 0 for other cluster events
	Err  error // what went wrong, for failures
	// Reason says why the worker is replaced, on EventRecycled (a rule of
	// the master queued it) and EventOld (its successor is ready); zero on
	// every other event.
	Reason Reason
	Time   time.Time

	// Workers is EventScale's new target worker count (0 for other kinds).
	Workers int
}

// Kind is what an Event tells.
type Kind uint8

// The kinds of events. A worker's events first, then the cluster's, then
// the monitor's.
const (
	EventForked             Kind = iota + 1 // spawned (the emitter arms its rings now)
	EventWarming                            // running WarmUp
	EventWarmUp                             // warmed up, joining the shared socket
	EventWarmUpFailure                      // WarmUp failed (Err wraps ErrWarmUp)
	EventListening                          // accepting on the shared socket
	EventPaused                             // stopped accepting, by request
	EventResumed                            // accepting again after a pause
	EventDraining                           // acknowledged a drain
	EventOld                                // replaced: told to drain
	EventUnresponsive                       // told to drain, neither drains nor heartbeats
	EventSigTerm                            // sent SIGTERM
	EventSigKill                            // sent SIGKILL
	EventDied                               // exited (Err: how)
	EventReplaceFailure                     // no successor could replace it (Err wraps ErrReplaceFailed)
	EventUp                                 // every initial worker listened and warmed up
	EventDown                               // a graceful stop began
	EventRollingRestart                     // a rolling restart began
	EventRespawnFailure                     // a lost worker's slot could not be refilled yet (Slot)
	EventMarkUp                             // the ECV was marked up (made by the monitor)
	EventMarkDown                           // the ECV was marked down (made by the monitor)
	EventAuxForked                          // an auxiliary process (Config.Aux) was spawned, or respawned (Pid, Slot)
	EventAuxDied                            // an auxiliary process exited (Pid, Slot; Err: how); it is respawned unless a stop began
	EventRollingRestartDone                 // a rolling restart ended (Err: the joined errors of the replacements that failed, or why it stopped waiting)
	EventCheckFailed                        // the binary on disk failed its check (Config.Check) before a rolling restart's first successor: nothing replaced (Err: why)
	EventUpgrade                            // an in-place upgrade began: the master is about to execve the new binary
	EventAdopted                            // the master's new image adopted this running worker (Adopt)
	EventUpgradeDone                        // an in-place upgrade ended (Err: why it failed and the master went back; nil: every worker runs the new build)
	EventScale                              // the target worker count changed (Scale, SIGTTIN, SIGTTOU; Workers: the new target)
	EventRecycled                           // a rule of the master (Reason: MaxRequests, HungRequests, ShouldKill, MemoryLimit, the nanny) queued this worker for replacement
)

// noState is kinds' state for a kind that implies none.
const noState State = -1

// kinds is the one table of the events: for each kind its name (the last
// part of a worker's event name, the whole name of a cluster event), whether
// it is a worker's event, and the worker State it implies, if any.
var kinds = [...]struct {
	what   string
	worker bool
	state  State
}{
	EventForked:             {"forked", true, Forked},
	EventWarming:            {"warming", true, Warming},
	EventWarmUp:             {"warmup", true, Warming},
	EventWarmUpFailure:      {"warmup-failure", true, noState},
	EventListening:          {"listening", true, Active},
	EventPaused:             {"paused", true, Paused},
	EventResumed:            {"resumed", true, Active},
	EventDraining:           {"draining", true, noState},
	EventOld:                {"old", true, Old},
	EventUnresponsive:       {"unresponsive", true, noState},
	EventSigTerm:            {"sigterm", true, noState},
	EventSigKill:            {"sigkill", true, noState},
	EventDied:               {"died", true, Died},
	EventReplaceFailure:     {"replace-failure", true, noState},
	EventUp:                 {"up", false, noState},
	EventDown:               {"down", false, noState},
	EventRollingRestart:     {"rolling-restart", false, noState},
	EventRespawnFailure:     {"respawn-failure", false, noState},
	EventMarkUp:             {"markUp", false, noState},
	EventMarkDown:           {"markDown", false, noState},
	EventAuxForked:          {"aux-forked", false, noState},
	EventAuxDied:            {"aux-died", false, noState},
	EventRollingRestartDone: {"rolling-restart-done", false, noState},
	EventCheckFailed:        {"check-failure", false, noState},
	EventUpgrade:            {"upgrade", false, noState},
	EventAdopted:            {"adopted", true, noState},
	EventUpgradeDone:        {"upgrade-done", false, noState},
	EventScale:              {"scale", false, noState},
	EventRecycled:           {"recycled", true, noState},
}

func (k Kind) valid() bool { return k > 0 && int(k) < len(kinds) }

// String returns the kind's name: "forked", "listening", "up", "markUp", …
// (a worker's event is published as "worker-<pid>-" followed by it; see
// Event.Name).
func (k Kind) String() string {
	if !k.valid() {
		return "unknown"
	}
	return kinds[k].what
}

// Worker reports whether events of this kind are about one worker (Pid
// set, named "worker-<pid>-<kind>").
func (k Kind) Worker() bool { return k.valid() && kinds[k].worker }

// State returns the worker State an event of this kind implies, and false
// when it implies none (the cluster's events, and a worker's events that
// change nothing in Workers, such as sigterm).
func (k Kind) State() (State, bool) {
	if !k.valid() || kinds[k].state == noState {
		return 0, false
	}
	return kinds[k].state, true
}

// Name returns the event's public name, the one the emitter publishes it
// under: "worker-<pid>-<kind>" for a worker's event ("worker-4242-listening"),
// the kind's name for the others ("up", "respawn-failure", "markUp").
func (e Event) Name() string {
	if e.Kind.Worker() {
		return "worker-" + strconv.Itoa(e.Pid) + "-" + e.Kind.String()
	}
	return e.Kind.String()
}

// String returns the event's Name.
func (e Event) String() string { return e.Name() }

// emitSlot sends a cluster event about slot (no process in it) to OnEvent.
func (m *Master) emitSlot(k Kind, slot int, err error) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Kind: k, Slot: slot, Err: err, Time: time.Now()})
	}
}

// emit sends an event to OnEvent: about h, or a cluster event when h is nil.
func (m *Master) emit(k Kind, h *handle, err error) { m.send(k, h, err, 0) }

// emitReason sends a worker's event that says why it is replaced.
func (m *Master) emitReason(k Kind, h *handle, why Reason) { m.send(k, h, nil, why) }

func (m *Master) send(k Kind, h *handle, err error, why Reason) {
	if m.cfg.OnEvent == nil {
		return
	}
	e := Event{Kind: k, Err: err, Reason: why, Time: time.Now()}
	if h != nil {
		e.Pid, e.Slot = h.pid, h.slot
	}
	m.cfg.OnEvent(e)
}
