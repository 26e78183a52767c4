//go:build linux

package persist

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// allocate makes f's bytes [from, to) allocated zeros with fallocate;
// errNoAllocate when the file system cannot (preallocate then writes zeros).
func allocate(f *os.File, from, to int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, from, to-from)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return errNoAllocate
	}
	return err
}

// fdatasync writes f's data (and the metadata needed to read it back) to
// the disk and flushes its cache. (Through SyscallConn: a concurrent Close
// waits for it instead of leaving it a closed descriptor.)
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}
