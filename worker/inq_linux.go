package worker

import "golang.org/x/sys/unix"

// inQueue returns the bytes waiting in the receive queue of socket fd (0 if
// it cannot tell).
func inQueue(fd uintptr) int {
	n, _ := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return n
}
