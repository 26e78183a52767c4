//go:build !linux

package cluster2

// openRunningBinary is Linux's only: Listen returns ErrNotSupported
// elsewhere, so no upgrade begins.
func openRunningBinary() (int, error) { return -1, ErrNotSupported }
