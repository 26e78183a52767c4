package ring

import "sync/atomic"

// storeRelease stores v at addr with release semantics only: a plain MOV,
// which x86-TSO never reorders with earlier loads or stores, unlike the XCHG
// of sync/atomic's sequentially consistent Store, which also drains the store
// buffer (the consumer covers the one reordering that matters, a load of its
// sleeping flag passing this store: see Consumer.drained and the package
// doc). An
// assembly function, so that the compiler keeps it where it is: after the
// payload's stores and before the load of the consumer's sleeping flag.
//
//go:noescape
func storeRelease(addr *atomic.Uint64, v uint64)

// releaseStores reports whether storeRelease is cheaper than a sequentially
// consistent store on this architecture.
const releaseStores = true

// cpuPause executes n PAUSE instructions (n > 0): a spin-wait hint that lets
// the core slow the loop down and give way to its sibling thread.
//
//go:noescape
func cpuPause(n uint32)
