package master

import "errors"

// These errors can be returned by Start.
var (
	// ErrBadConfig is wrapped by Start's errors for a Config field out of
	// range; the message names the field.
	ErrBadConfig = errors.New("master: invalid config")

	// ErrStartFailed is returned by Start when an initial worker did not
	// become ready (warm-up failure, crash or timeout) within its retries.
	ErrStartFailed = errors.New("master: initial worker failed to start")

	// ErrNoSlot is returned when every slot of the process table is taken.
	ErrNoSlot = errors.New("master: no free worker slot")
)

// These errors can be returned by the control methods (Pause, Resume,
// Replace, RollingRestart).
var (
	// ErrUnknownWorker is returned for a pid that is not a live worker of
	// this master.
	ErrUnknownWorker = errors.New("master: no such worker")

	// ErrWrongState is returned when a worker is not in a state the
	// operation applies to (pausing a paused worker, replacing an old one).
	ErrWrongState = errors.New("master: worker in wrong state")

	// ErrReplaceFailed is returned (and reported as a "replace-failure"
	// event) when no successor became ready within the retries: the old
	// worker keeps serving.
	ErrReplaceFailed = errors.New("master: replacement failed; old worker kept")

	// ErrStopped is returned by operations on a master that is stopping or
	// stopped.
	ErrStopped = errors.New("master: stopped")
)
