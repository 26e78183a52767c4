//go:build linux

package shm

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations. They are the shared (not FUTEX_PRIVATE_FLAG) variants: the
// word lives in memory mapped by several processes, and a private futex is
// keyed by the address space.
const (
	futexWait = 0
	futexWake = 1
)

// FutexWait sleeps while *w == val, for at most timeout (a negative timeout
// waits without limit). It returns nil when woken, when *w != val on entry
// (EAGAIN) and when interrupted by a signal (EINTR): callers must re-check
// their condition, because spurious wake-ups are allowed. It returns
// ErrTimeout when the timeout elapsed, and wraps any other errno.
//
// The word may be anywhere in shared memory; the kernel keys the wait by the
// page and offset, so every process mapping the arena meets on it.
func FutexWait(w *atomic.Uint32, val uint32, timeout time.Duration) error {
	var ts unix.Timespec
	var tsp *unix.Timespec
	if timeout >= 0 {
		ts = unix.NsecToTimespec(int64(timeout))
		tsp = &ts
	}
	// unix.Syscall6, not RawSyscall: the goroutine may block, and the runtime
	// must hand its P to another goroutine meanwhile.
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWait, uintptr(val),
		uintptr(unsafe.Pointer(tsp)), 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	default:
		return fmt.Errorf("shm: futex wait: %w", e)
	}
}

// FutexWake wakes up to n processes or threads sleeping on w and returns how
// many it woke.
func FutexWake(w *atomic.Uint32, n int) (int, error) {
	if n <= 0 || n > math.MaxInt32 {
		n = math.MaxInt32
	}
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWake, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("shm: futex wake: %w", e)
	}
	return int(r), nil
}
