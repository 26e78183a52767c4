package emitter

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Emit, EmitContext and Sender.Emit.
var (
	// ErrTooLarge is returned when an event's frame (header, targets, name
	// and JSON arguments) is larger than MaxFrame of the emitter's rings
	// (Options.RingSize/4; 64 KiB by default). Nothing is sent.
	ErrTooLarge = errors.New("emitter: event too large")

	// ErrBadName is returned for an empty event name or one longer than
	// MaxName bytes.
	ErrBadName = errors.New("emitter: invalid event name")

	// ErrArgs is returned (wrapping the JSON error) when an argument cannot
	// be encoded as JSON.
	ErrArgs = errors.New("emitter: argument not encodable as JSON")

	// ErrNoBackplane is returned by an emit to AllHosts when this host has
	// no backplane (Emitter.SetBackplane was not called in its master: no
	// Redis configured): the event reached this host's processes only.
	ErrNoBackplane = errors.New("emitter: no backplane to other hosts")

	// ErrBackplane is returned (wrapping the backplane's error, or with
	// its text when a worker's master answered) by an emit to AllHosts that
	// the backplane refused (Redis down, for one): the event reached this
	// host's processes only.
	ErrBackplane = errors.New("emitter: backplane refused the event")

	// ErrClosed is returned by operations on a closed emitter.
	ErrClosed = errors.New("emitter: closed")
)

// A full ring that stays full until the context ends is reported with an
// error wrapping both ring.ErrFull and the context's error; a listener's
// queue that stays full is reported with ErrQueueFull and the context's
// error.
var (
	// ErrQueueFull is returned (wrapped with the context's error) when a
	// local delivery waited for a listener whose queue stayed full.
	ErrQueueFull = errors.New("emitter: listener queue full")
)

// These errors can be returned by Attach, Open and AddWorker.
var (
	// ErrAttached is returned by Attach on an emitter already attached.
	ErrAttached = errors.New("emitter: already attached")

	// ErrInvalidConfig is wrapped by the errors for invalid Options, a slot
	// outside the emitter region, or a role that does not fit the call. It
	// is the one invalid-config error of every cluster2 package
	// (cluster2.ErrInvalidConfig is the same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrCorrupt is returned when the emitter region in the arena is not one
	// (bad magic or version, impossible sizes or offsets), and by
	// DecodeFrame for a malformed frame.
	ErrCorrupt = errors.New("emitter: corrupt region or frame")
)
