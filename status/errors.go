package status

import "errors"

// These errors can be returned by Register, Get and Set, or carried by an
// Entry.
var (
	// ErrUnknown is returned by Get and Set for a name no process (that this
	// one can reach) has registered.
	ErrUnknown = errors.New("status: unknown status")

	// ErrTimeout is carried (wrapped with the context's error) by the Entry
	// of a process that did not answer in time.
	ErrTimeout = errors.New("status: no answer in time")

	// ErrReadOnly is carried by the Entry of a process whose status has no
	// update function, in answer to Set.
	ErrReadOnly = errors.New("status: status has no update function")

	// ErrFailed is carried (wrapped with the message) by the Entry of a
	// process whose view or update function failed or panicked; errors
	// returned by a remote update arrive as their text only.
	ErrFailed = errors.New("status: view or update failed")

	// ErrBadName is returned by Register for an empty name or a nil view.
	ErrBadName = errors.New("status: invalid registration")
)
