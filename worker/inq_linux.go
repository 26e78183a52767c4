package worker

import (
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"golang.org/x/sys/unix"
)

// inQueue returns the bytes waiting in the receive queue of socket fd (0 if
// it cannot tell).
func inQueue(fd uintptr) int {
	n, _ := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return n
}

// listenQueue returns the connections waiting in the shared socket's accept
// queue (TCP_INFO's tcpi_unacked on a listening socket; 0 if it cannot tell).
func listenQueue() int {
	ti, err := unix.GetsockoptTCPInfo(proc.ListenerFD, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return int(ti.Unacked)
}

// preciseSleep sleeps d in a nanosleep system call: Go's timers wake a
// process whose threads are all idle only at millisecond granularity (a
// 200 µs time.Sleep took 1.1 ms on the 2-vCPU machine), five times the step.
// The thread blocks; the runtime hands its P to another thread if the
// sleep outlasts sysmon's look, and at worst the worker's other goroutines
// wait one step.
func preciseSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
