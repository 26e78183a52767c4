package master

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Start and WaitUp.
var (
	// ErrInvalidConfig is wrapped by Start's errors for a Config field out
	// of range; the message names the field. It is the one invalid-config
	// error of every cluster2 package (cluster2.ErrInvalidConfig is the
	// same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrStartFailed is returned by WaitUp when an initial worker did not
	// become ready (warm-up failure, crash or timeout) within its retries,
	// and by Start when an auxiliary process exited before it was ready.
	ErrStartFailed = errors.New("master: the cluster failed to start")

	// ErrNoSlot is returned when every slot of the process table is taken.
	ErrNoSlot = errors.New("master: no free worker slot")

	// ErrPidDir is wrapped by Start's error for a Config.PidDir that is
	// unsafe (a symlink, not a directory, another user's, or writable by
	// group or others) or unusable (cannot be created or read, the
	// master's pid file cannot be written); the message says which.
	ErrPidDir = errors.New("master: unsafe or unusable pid directory")
)

// These errors say why a worker did not become ready; Start's
// ErrStartFailed, ErrReplaceFailed and the events "warmup-failure" and
// "replace-failure" wrap them, with the worker's own words when it gave
// any.
var (
	// ErrWarmUp: the worker's WarmUp returned an error or timed out. The
	// message carries WarmUp's error as the worker reported it (cut at
	// proc.ReasonMax bytes).
	ErrWarmUp = errors.New("master: worker warm-up failed")

	// ErrExited: the worker exited before it listened. The message carries
	// the error Run returned in it (Attach, ConfigureApp …) when it
	// reported one.
	ErrExited = errors.New("master: worker exited before listening")

	// ErrNotReady: the worker was not listening within ReplaceTimeout.
	ErrNotReady = errors.New("master: worker not ready in time")
)

// These errors can be returned by the control methods (Pause, Resume,
// Replace, RollingRestart).
var (
	// ErrUnknownWorker is returned for a pid that is not a live worker of
	// this master.
	ErrUnknownWorker = errors.New("master: no such worker")

	// ErrWrongState is returned when a worker is not in a state the
	// operation applies to (pausing a paused worker, replacing an old one),
	// and by every control method before WaitUp put the cluster up.
	ErrWrongState = errors.New("master: worker in wrong state")

	// ErrReplaceFailed is returned (and reported as a "replace-failure"
	// event) when no successor became ready within the retries: the old
	// worker keeps serving.
	ErrReplaceFailed = errors.New("master: replacement failed; old worker kept")

	// ErrStopped is returned by operations on a master that is stopping or
	// stopped, WaitUp's included when a stop began before the workers were
	// up.
	ErrStopped = errors.New("master: stopped")

	// ErrUpgrading is returned by the control methods while an in-place
	// upgrade holds the master (Freeze): the next image takes the
	// request.
	ErrUpgrading = errors.New("master: an in-place upgrade is in progress")
)

// These errors can be returned by Scale.
var (
	// ErrAboveCeiling is returned by Scale for more workers than
	// MaxWorkers (Config.MaxWorkers, fixed when the arena's process table
	// was made); the message names the ceiling. Nothing changes.
	ErrAboveCeiling = errors.New("master: worker count above the ceiling (Config.MaxWorkers)")

	// ErrScaleRange is returned by Scale for fewer than one worker.
	// Nothing changes.
	ErrScaleRange = errors.New("master: worker count below 1")

	// ErrScaleFailed is returned by Scale when a new worker did not come
	// up within its retries (the error says why): the target stays, the
	// workers that came up are kept, and a later Scale tries again.
	ErrScaleFailed = errors.New("master: scaling up failed")
)
