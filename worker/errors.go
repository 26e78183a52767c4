package worker

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Run.
var (
	// ErrInvalidConfig is wrapped by Run's error for a Config field out of
	// range (no server: neither Handler nor Serve, or both); the message
	// names the field. It is the one
	// invalid-config error of every cluster2 package
	// (cluster2.ErrInvalidConfig is the same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrNotWorker is returned by Run in a process that a cluster2 master did
	// not start.
	ErrNotWorker = errors.New("worker: not a cluster2 worker process")

	// ErrWarmUp is returned by Run when WarmUp failed or timed out: the worker
	// reported it to the master and did not join the shared socket.
	ErrWarmUp = errors.New("worker: warm-up failed")

	// ErrStopped is returned by Run when the worker was told to stop
	// (SIGTERM, or its master died) before it joined the shared socket.
	ErrStopped = errors.New("worker: stopped before listening")

	// ErrServe is wrapped by Run's error when Config.Serve returned during
	// warm-up before its listener was closed, and by Wait's when it
	// returned while the worker was listening: the worker drained and
	// stopped (the master replaces it). The message carries Serve's error.
	ErrServe = errors.New("worker: Serve returned while its listener was open")

	// ErrInherit is returned by Run when an inherited descriptor (listener,
	// arena, death pipe) is missing or unusable.
	ErrInherit = errors.New("worker: inherited descriptor unusable")
)

// These errors can be returned by Wait.
var (
	// ErrMasterDied is returned by Wait when the worker stopped because its
	// master is gone.
	ErrMasterDied = errors.New("worker: master died")
)
