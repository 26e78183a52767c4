// Package shmtest helps tests that use a shared arena: it makes throw-away
// arenas and proves that types meant for the arena hold no Go pointers.
package shmtest

import (
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// NewArena creates an arena of size bytes (0: the default) that is closed when
// the test ends.
func NewArena(tb testing.TB, size int64) *shm.Arena {
	tb.Helper()
	a, err := shm.Create(shm.Options{Size: size, Slots: 16, Name: "shmtest"})
	if err != nil {
		tb.Fatalf("shmtest: create arena: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// AssertNoPointers fails the test for every value whose type holds a Go
// pointer anywhere (pointers, slices, maps, strings, interfaces, funcs,
// channels, unsafe.Pointer; uintptr is allowed). Arena memory is invisible to
// the garbage collector: a Go pointer stored there would dangle.
func AssertNoPointers(tb testing.TB, values ...any) {
	tb.Helper()
	xtesting.AssertNoPointers(tb, values...)
}
