//go:build !amd64 && !arm64

package order

import "sync/atomic"

// PlainRelease reports whether StoreRelease is cheaper than sync/atomic's
// Store here: in the fallback it is that Store.
const PlainRelease = false

// StoreRelease stores v at p with release semantics (see the package doc): the
// fallback is sync/atomic's sequentially consistent Store, which is stronger.
func StoreRelease(p *atomic.Uint64, v uint64) { p.Store(v) }

// LoadFence orders earlier loads before later ones: the fallback is a full
// fence (see Fence).
func LoadFence() { Fence() }

// StoreFence orders earlier stores before later ones: the fallback is a full
// fence (see Fence).
func StoreFence() { Fence() }

// Fence is a full fence: the fallback is a sequentially consistent
// read-modify-write of a local word, which every port implements with full
// barriers around it (sync, or an AMO with acquire and release bits). The
// word is local so that concurrent fences do not share a cache line.
//
//go:noinline
func Fence() {
	var w atomic.Uint32
	w.Add(0)
}
