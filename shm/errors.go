package shm

import (
	"errors"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Create, Open and the arena's allocators.
var (
	// ErrNotSupported is returned on platforms without memfd and futexes.
	ErrNotSupported = errors.New("shm: not supported on this platform")

	// ErrBadMagic is returned by Open when the descriptor does not hold a
	// cluster2 arena (a foreign or zeroed file).
	ErrBadMagic = errors.New("shm: not a cluster2 arena (bad magic)")

	// ErrLayoutVersion is returned by Open when the arena was created by a
	// build with another layout version: old and new binaries must not share
	// one arena.
	ErrLayoutVersion = errors.New("shm: arena layout version mismatch")

	// ErrCorrupt is returned by Open when the header contradicts itself or the
	// file (a size that does not match, a directory that points outside).
	ErrCorrupt = errors.New("shm: corrupt arena header")

	// ErrArenaFull is returned when an allocation does not fit in what is left
	// of the arena, or when a fixed directory (regions, lock ranges) is full.
	ErrArenaFull = errors.New("shm: arena full")

	// ErrRegionMismatch is returned by Region when a region of that name exists
	// with another size.
	ErrRegionMismatch = errors.New("shm: region exists with another size")

	// ErrInvalidConfig is wrapped by the errors of Create for sizes or
	// counts out of range, and of Region, Alloc, Lock ranges and slot
	// accessors for a name, size or index out of range. It is the one
	// invalid-config error of every cluster2 package
	// (cluster2.ErrInvalidConfig is the same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrClosed is returned by operations on a closed arena.
	ErrClosed = errors.New("shm: arena closed")
)

// These errors can be returned by Join, JoinSlot and ReleaseSlot.
var (
	// ErrNoSlot is returned by Join when every slot is held by a live process.
	ErrNoSlot = errors.New("shm: no free process slot")

	// ErrSlotBusy is returned by JoinSlot when the slot is held by a live
	// process, and by ReleaseSlot when its owner is still alive.
	ErrSlotBusy = errors.New("shm: process slot is busy")
)

// These errors can be returned by futex waits and lock acquisition.
var (
	// ErrTimeout is returned by FutexWait when its timeout elapsed, and wrapped
	// by waits whose deadline passed.
	ErrTimeout = errors.New("shm: wait timed out")
)
