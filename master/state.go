package master

import (
	"fmt"
	"slices"
	"time"

	"github.com/cluster2/cluster2/worker"
)

// State is a worker's state as the master sees it:
// forked → warming → active ⇄ paused → old → died.
type State int

// The states of a worker.
const (
	Forked  State = iota // spawned; not reported yet
	Warming              // running WarmUp (or warmed, joining the socket)
	Active               // accepting on the shared socket
	Paused               // not accepting, by request
	Old                  // replaced: draining before exit
	Died                 // exited
)

var stateNames = [...]string{"forked", "warming", "active", "paused", "old", "died"}

// String returns the state's name.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText encodes the state as its name (in JSON: "active", …).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state's name.
func (s *State) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("master: unknown state %q", b)
	}
	*s = State(i)
	return nil
}

// WorkerInfo describes one worker for Workers.
type WorkerInfo struct {
	Pid           int
	Slot          int
	State         State
	Started       time.Time
	LastHeartbeat time.Time        // zero before the first
	Heartbeat     worker.Heartbeat // the latest, zero before the first
	Build         Build            // what the worker says of its build; zero until it reports a state
	// Accepts and Requests are the connections the worker accepted on the
	// shared socket and the requests it completed there since it started
	// (not its warm-up's), read live from its control block when Workers is
	// called (the worker counts; the heartbeat's TotalConns is the same
	// count as of its time).
	Accepts  uint64
	Requests uint64
	// RequestLimit is the requests after which it is recycled
	// (Config.MaxRequests plus its jitter); 0: none.
	RequestLimit uint64
	// HungRequests is its requests that passed the server's RequestTimeout,
	// read live from its control block.
	HungRequests uint64
}

// Build is what a process says of its build: the application's version
// (cluster2.Config.Version), the VCS revision (its first 12 characters, ""
// without VCS stamping) and the Go version. A worker stores it in its
// control block when it joins (bounded: internal/proc's BuildMax).
type Build struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go"`
}
