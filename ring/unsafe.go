package ring

import "unsafe"

// This file holds the compile-time proofs of the ring layout: each pair of
// array types fails to compile when the header's size or a hot word's offset
// drifts from the format in the package doc. The ring does no pointer
// arithmetic of its own (it uses shm.Ptr, shm.Slice and Arena.Bytes).
var (
	_ [HeaderSize - unsafe.Sizeof(header{})]byte
	_ [unsafe.Sizeof(header{}) - HeaderSize]byte

	_ [8 - unsafe.Sizeof(waiter{})]byte
	_ [unsafe.Sizeof(waiter{}) - 8]byte

	// The waiters share the first line's second half, written only by sleepers.
	_ [unsafe.Offsetof(header{}.dataReady) - 64]byte
	_ [64 - unsafe.Offsetof(header{}.dataReady)]byte

	// The consumer's sleep generation and the producer's acknowledgement
	// follow them on the same half line.
	_ [unsafe.Offsetof(header{}.sleepGen) - 80]byte
	_ [80 - unsafe.Offsetof(header{}.sleepGen)]byte
	_ [unsafe.Offsetof(header{}.ackGen) - 88]byte
	_ [88 - unsafe.Offsetof(header{}.ackGen)]byte

	// The producer's tail opens the second 128-byte line.
	_ [unsafe.Offsetof(header{}.tail) - 128]byte
	_ [128 - unsafe.Offsetof(header{}.tail)]byte

	// The consumer's read and head open the third.
	_ [unsafe.Offsetof(header{}.read) - 256]byte
	_ [256 - unsafe.Offsetof(header{}.read)]byte
	_ [unsafe.Offsetof(header{}.head) - 264]byte
	_ [264 - unsafe.Offsetof(header{}.head)]byte

	// The data area starts on a 128-byte boundary after the header.
	_ [0 - HeaderSize%128]byte
)
