package shm

import (
	"syscall"
	"testing"
)

// ExhaustDescriptorsForTest is exhaustDescriptors, for the external tests.
var ExhaustDescriptorsForTest = exhaustDescriptors

// exhaustDescriptors lowers this process's soft descriptor limit to a few
// hundred and opens /dev/null until open fails with EMFILE, as a server
// under a connection flood does; the returned func closes them and restores
// the limit. Keep what runs in between short: nothing in this process can
// open a file meanwhile.
func exhaustDescriptors(tb testing.TB) (restore func()) {
	tb.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		tb.Fatal(err)
	}
	lim := old
	lim.Cur = min(lim.Cur, 512)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	var fds []int
	var err error
	for {
		var fd int
		fd, err = syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fds = append(fds, fd)
	}
	restore = func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	}
	if err != syscall.EMFILE {
		restore()
		tb.Fatalf("open after %d descriptors: %v; want EMFILE", len(fds), err)
	}
	return restore
}
