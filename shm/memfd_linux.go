//go:build linux

package shm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// createMapping makes a memfd of size bytes, reserves its pages and maps it
// shared. The descriptor is close-on-exec; exec.Cmd.ExtraFiles dups it into
// the child without that flag.
func createMapping(name string, size int64) (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shm: ftruncate %d: %w", size, err)
	}
	// Reserve the pages now: on a machine without the memory this fails here
	// with ENOSPC/ENOMEM instead of killing a process later with SIGBUS.
	if err := unix.Fallocate(fd, 0, 0, size); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shm: reserve %d bytes: %w", size, err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shm: mmap %d bytes: %w", size, err)
	}
	return f, mem, nil
}

// mapFile maps the whole of f shared.
func mapFile(f *os.File) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("shm: fstat: %w", err)
	}
	if st.Size < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes is smaller than a header", ErrBadMagic, st.Size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap %d bytes: %w", st.Size, err)
	}
	return mem, nil
}

func unmap(mem []byte) error {
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("shm: munmap: %w", err)
	}
	return nil
}
