//go:build linux

package ring

import (
	"sync"

	"golang.org/x/sys/unix"
)

// membarrier(2) commands.
const (
	membarrierQuery                   = 0
	membarrierGlobalExpedited         = 1 << 1
	membarrierRegisterGlobalExpedited = 1 << 2
	membarrierNeeded                  = membarrierGlobalExpedited | membarrierRegisterGlobalExpedited
)

var fenceOnce struct {
	sync.Once
	ok bool
}

// registerFence registers this process (once) as one whose running threads
// [peerFence] interrupts with a full memory barrier, and reports whether the
// kernel supports it.
func registerFence() bool {
	fenceOnce.Do(func() {
		r, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierQuery, 0, 0)
		if e != 0 || r&membarrierNeeded != membarrierNeeded {
			return
		}
		_, _, e = unix.Syscall(unix.SYS_MEMBARRIER, membarrierRegisterGlobalExpedited, 0, 0)
		fenceOnce.ok = e == 0
	})
	return fenceOnce.ok
}

// peerFence makes every running thread of every registered process execute a
// full memory barrier before it returns: a producer's release store of a header
// that precedes that barrier is visible to the caller afterwards, and a load of
// the sleeping flag that follows it sees the caller's earlier store. It reports
// false when the kernel refused.
func peerFence() bool {
	_, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierGlobalExpedited, 0, 0)
	return e == 0
}
