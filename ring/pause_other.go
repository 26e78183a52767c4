//go:build !amd64

package ring

// cpuPause is a no-op where the ring has no pause instruction of its own.
func cpuPause(uint32) {}
