//go:build !linux

package persist

import "os"

// allocate: no fallocate here; preallocate writes zeros.
func allocate(f *os.File, from, to int64) error { return errNoAllocate }

// fdatasync falls back on fsync (on darwin, os.File.Sync is F_FULLFSYNC:
// slower, and as safe).
func fdatasync(f *os.File) error { return f.Sync() }
