package cluster2

import "errors"

// These errors can be returned by Listen.
var (
	// ErrInvalidConfig is wrapped by Listen's error for a Config field out
	// of range; the message names the field.
	ErrInvalidConfig = errors.New("cluster2: invalid config")

	// ErrNotSupported is returned by Listen on platforms without memfd,
	// futexes and re-exec (anything but Linux).
	ErrNotSupported = errors.New("cluster2: not supported on this platform")
)

// These errors can be returned by the methods of a Cluster.
var (
	// ErrNotMaster is returned by master-only methods (Pause, Resume,
	// Replace, RollingRestart) called in a worker.
	ErrNotMaster = errors.New("cluster2: not the master")
)
