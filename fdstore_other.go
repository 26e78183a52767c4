//go:build !linux

package cluster2

// sendFdStore is Linux's only (Listen returns ErrNotSupported elsewhere).
func sendFdStore([]storedFd) error { return ErrNotSupported }
