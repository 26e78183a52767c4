package monitor

import "errors"

// These errors can be returned by New and Start.
var (
	// ErrInvalidOptions is returned (wrapped, naming the field) when an
	// Options field is out of range.
	ErrInvalidOptions = errors.New("monitor: invalid options")

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
