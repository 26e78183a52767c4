//go:build !amd64

package ring

import "sync/atomic"

// storeRelease is a sequentially consistent store where the ring has no
// cheaper release store of its own (see fence_amd64.go).
func storeRelease(addr *atomic.Uint64, v uint64) { addr.Store(v) }

const releaseStores = false

// cpuPause is a no-op where the ring has no pause instruction of its own.
func cpuPause(uint32) {}
