package monitor

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by New and Start.
var (
	// ErrInvalidConfig is wrapped (naming the field) by New's error when an
	// Options field is out of range. It is the one invalid-config error of
	// every cluster2 package (cluster2.ErrInvalidConfig is the same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrStarted is returned by Start when the server was already started.
	ErrStarted = errors.New("monitor: already started")

	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("monitor: closed")
)

// These errors can be returned by the actions (and are answered as HTTP
// errors by the routes that run them).
var (
	// ErrNotControlMode is returned by MarkUp and MarkDown when the ECV is in
	// monitor mode: there the application decides.
	ErrNotControlMode = errors.New("monitor: ecv is not in control mode")

	// ErrNoCache is returned when a route names a cache the source does not
	// know, or when the source has no caches at all.
	ErrNoCache = errors.New("monitor: no such cache")

	// ErrNoStatus is returned by the /status route when the source offers no
	// statuses.
	ErrNoStatus = errors.New("monitor: no statuses")
)
