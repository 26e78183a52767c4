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
}
