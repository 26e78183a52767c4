// Package nocopy holds the marker that makes go vet report a copy of a value
// that must not be copied.
//
// A type whose doc says "must not be copied" (it holds a mapping, a
// descriptor, a lock word in shared memory, goroutines that point back at it)
// carries a blank field of type [NoCopy], first, so that it adds no bytes:
//
//	type Cache struct {
//		_ nocopy.NoCopy
//		...
//	}
//
// NoCopy has Lock and Unlock methods on its pointer, so vet's copylocks check
// treats it as a lock and reports every assignment, call argument, return
// value and range variable that copies a value containing it. It does nothing
// at run time. Do not embed it: that would give the outer type Lock and
// Unlock methods.
package nocopy

// NoCopy is a zero-size marker for go vet's copylocks check; see the package
// doc.
type NoCopy struct{}

// Lock does nothing; it makes *NoCopy a sync.Locker for go vet.
func (*NoCopy) Lock() {}

// Unlock does nothing; see Lock.
func (*NoCopy) Unlock() {}
