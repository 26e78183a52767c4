package shm

import "unsafe"

// This file holds all of the package's pointer arithmetic, and the
// compile-time proofs of the layout: each pair of array types below fails to
// compile when a struct's size or a field's offset drifts from the format.
var (
	_ [HeaderSize - unsafe.Sizeof(header{})]byte
	_ [unsafe.Sizeof(header{}) - HeaderSize]byte
	_ [0 - unsafe.Offsetof(header{}.lock)%CacheLine]byte
	_ [unsafe.Offsetof(header{}.lock) - CacheLine]byte
	_ [CacheLine - unsafe.Offsetof(header{}.lock)]byte
	_ [0 - unsafe.Offsetof(header{}.regions)%CacheLine]byte
	_ [128 - unsafe.Offsetof(header{}.regions)]byte
	_ [unsafe.Offsetof(header{}.regions) - 128]byte

	_ [SlotSize - unsafe.Sizeof(slot{})]byte
	_ [unsafe.Sizeof(slot{}) - SlotSize]byte

	_ [48 - unsafe.Sizeof(regionEntry{})]byte
	_ [unsafe.Sizeof(regionEntry{}) - 48]byte
	_ [16 - unsafe.Sizeof(lockRange{})]byte
	_ [unsafe.Sizeof(lockRange{}) - 16]byte

	_ [LockSize - unsafe.Sizeof(Lock{})]byte
	_ [unsafe.Sizeof(Lock{}) - LockSize]byte
	_ [EventSize - unsafe.Sizeof(Event{})]byte
	_ [unsafe.Sizeof(Event{}) - EventSize]byte
)

// Ptr returns a pointer to the T stored at off in the arena. It panics if T
// does not fit inside the arena at off or off is not aligned for T: both are
// programmer errors (a corrupt offset read from the arena must be checked by
// the caller with [Arena.Contains] first). T must hold no Go pointers; every
// package tests its arena types with shmtest.AssertNoPointers.
func Ptr[T any](a *Arena, off Off) *T {
	var zero T
	size, align := uint64(unsafe.Sizeof(zero)), uint64(unsafe.Alignof(zero))
	if uint64(off)+size > uint64(len(a.mem)) || uint64(off)+size < uint64(off) || uint64(off)%align != 0 {
		panic("shm: Ptr out of bounds or misaligned")
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(a.mem[off:])))
}

// Slice returns the n values of type T stored from off on, as a Go slice
// backed by the arena. It panics like [Ptr].
func Slice[T any](a *Arena, off Off, n int) []T {
	var zero T
	size, align := uint64(unsafe.Sizeof(zero)), uint64(unsafe.Alignof(zero))
	total := size * uint64(n)
	if n < 0 || (size != 0 && total/size != uint64(n)) ||
		uint64(off)+total > uint64(len(a.mem)) || uint64(off)+total < uint64(off) || uint64(off)%align != 0 {
		panic("shm: Slice out of bounds or misaligned")
	}
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(a.mem[off:]))), n)
}
