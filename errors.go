package cluster2

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Listen.
var (
	// ErrInvalidConfig is wrapped by Listen's (and Validate's) error for a
	// Config field out of range; the message names the package and the
	// field. It is the one invalid-config error of every cluster2 package:
	// master, worker, shm, ring, cache, persist, emitter and monitor export
	// the same value under the same name, so errors.Is(err,
	// ErrInvalidConfig) holds whichever layer refused.
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrNotSupported is returned by Listen on platforms without memfd,
	// futexes and re-exec (anything but Linux).
	ErrNotSupported = errors.New("cluster2: not supported on this platform")

	// ErrActivation is wrapped by Listen's error when the master was
	// started with sockets (LISTEN_FDS: systemd's socket activation) and
	// none of them is a TCP listener on Config.Addr; the message lists the
	// addresses passed. See docs/runtime.md ("systemd: socket activation").
	ErrActivation = errors.New("cluster2: no activated socket on Config.Addr")

	// ErrCheckFailed is wrapped by Check's error, and so by a rolling
	// restart's (SIGHUP, Cluster.RollingRestart, the monitor's action) when
	// the binary on disk failed its check: nothing was replaced. The
	// message says why (missing, not executable, another architecture, its
	// exit status and stderr, no build information, another Layout: then
	// ErrLayoutMismatch is wrapped too).
	ErrCheckFailed = errors.New("cluster2: the new binary failed its check")
)

// These errors can be returned by the methods of a Cluster.
var (
	// ErrNotMaster is returned by master-only methods (Pause, Resume,
	// Replace, RollingRestart) called in a worker.
	ErrNotMaster = errors.New("cluster2: not the master")
)
