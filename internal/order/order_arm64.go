package order

import "sync/atomic"

// PlainRelease reports whether StoreRelease is cheaper than sync/atomic's
// Store here: on arm64 both are STLR.
const PlainRelease = false

// StoreRelease stores v at p with release semantics (see the package doc): STLR,
// which is what the compiler emits for sync/atomic's Store on arm64 (so it is
// that Store, inlined).
func StoreRelease(p *atomic.Uint64, v uint64) { p.Store(v) }

// LoadFence orders earlier loads before later ones: DMB ISHLD.
func LoadFence()

// StoreFence orders earlier stores before later ones: DMB ISHST.
func StoreFence()

// Fence is a full fence: DMB ISH.
func Fence()
