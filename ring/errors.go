package ring

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Init, Attach and the methods that open an
// end of a ring.
var (
	// ErrInvalidConfig is wrapped by the errors of Init and Size for a
	// capacity that is not a power of two in [MinCapacity, MaxCapacity], or
	// a region that does not fit in the arena. It is the one invalid-config
	// error of every cluster2 package (cluster2.ErrInvalidConfig is the same
	// value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrCorrupt is returned by Attach when the ring header is not a ring's
	// (bad magic, impossible capacity or positions), and by Poll and Read when
	// a record header is out of range. A Consumer that returned ErrCorrupt
	// returns it from then on, and never moves past the bad header; nothing
	// already in the ring is modified.
	ErrCorrupt = errors.New("ring: corrupt ring")

	// ErrBusy is returned by Ring.Producer and Ring.Consumer when that end is
	// held by another live process.
	ErrBusy = errors.New("ring: end held by a live process")
)

// These errors can be returned by writes.
var (
	// ErrTooLarge is returned by Write, TryWrite and Claim when the record
	// (8-byte header and payload, rounded up to 8 bytes) is larger than the
	// ring's capacity: it could never fit.
	ErrTooLarge = errors.New("ring: record too large")

	// ErrFull is returned (wrapped) when the ring stayed full until the
	// context ended; TryWrite returns it at once.
	ErrFull = errors.New("ring: ring full")
)

// These errors can be returned by waits on either end.
var (
	// ErrPeerDead is returned by a producer waiting on a full ring whose
	// consumer is dead, and by Read on an empty (or stuck) ring whose producer
	// is dead. After a producer's death, call Ring.Unblock, then attach a new
	// producer.
	ErrPeerDead = errors.New("ring: peer process is dead")
)
