package order

import "sync/atomic"

// PlainRelease reports whether StoreRelease is cheaper than sync/atomic's
// Store here: on amd64 it is a MOV, the atomic Store an XCHG (a full fence
// that drains the store buffer).
const PlainRelease = true

// StoreRelease stores v at p with release semantics (see the package doc): a plain
// MOV, which x86-TSO never reorders with earlier loads or stores.
//
//go:noescape
func StoreRelease(p *atomic.Uint64, v uint64)

// LoadFence orders earlier loads before later ones: x86-TSO never reorders
// loads, so it is nothing here, and inlined away. The compiler barrier the
// order still needs is the sync/atomic load that every use of LoadFence puts
// right after it (see the package doc).
func LoadFence() {}

// StoreFence orders earlier stores before later ones: x86-TSO never reorders
// stores, so it is nothing here, and inlined away. The compiler barrier is the
// sync/atomic store or read-modify-write that every use puts right before it
// (see the package doc).
func StoreFence() {}

// Fence is a full fence (LOCK OR of zero to the stack: cheaper than MFENCE
// on current AMD and Intel cores, and as strong for ordinary memory).
func Fence()
