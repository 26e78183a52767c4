//go:build linux

package shm

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// createMapping makes a memfd of size bytes, maps it shared, asks for huge
// pages (adviseHuge) and reserves its pages. The descriptor is
// close-on-exec; exec.Cmd.ExtraFiles dups it into the child without that
// flag.
//
// The pages are reserved now: on a machine without the memory this fails
// here with ENOMEM/ENOSPC instead of killing a process later with SIGBUS.
// When the kernel would give the advised mapping huge pages
// (shmemHugeOnAdvice) they are reserved by writing them through it
// (MADV_POPULATE_WRITE, Linux 5.14), not by fallocate: the kernel gives a
// shmem page a huge page only at a fault in a mapping that asked, and
// fallocate has no mapping. Otherwise, and on a kernel without
// MADV_POPULATE_WRITE, fallocate reserves them, as before (populating would
// only add page tables to the creator).
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
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shm: mmap %d bytes: %w", size, err)
	}
	adviseHuge(mem)
	err = unix.EINVAL
	if shmemHugeOnAdvice() {
		err = unix.Madvise(mem, unix.MADV_POPULATE_WRITE)
	}
	if errors.Is(err, unix.EINVAL) { // no huge pages to get, or before Linux 5.14
		err = unix.Fallocate(fd, 0, 0, size)
	}
	if err != nil {
		unix.Munmap(mem)
		f.Close()
		return nil, nil, fmt.Errorf("shm: reserve %d bytes: %w", size, err)
	}
	return f, mem, nil
}

// adviseHuge asks the kernel to back mem with transparent huge pages
// (MADV_HUGEPAGE), so that a lookup among many entries walks fewer page
// tables and misses the TLB less (docs/BENCHMARKS.md, hits among 1M keys).
// The kernel does so for a memfd only when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is "advise" (or
// "within_size" or "always", which need no advice); with "never", the
// default of most distributions, and on a kernel without transparent huge
// pages the advice is refused or ignored and the arena has small pages, as
// before: nothing to report.
func adviseHuge(mem []byte) { _ = unix.Madvise(mem, unix.MADV_HUGEPAGE) }

// shmemHugeOnAdvice reports whether the kernel gives huge pages to a shmem
// mapping that asks (shmem_enabled "advise", "within_size" or "always").
func shmemHugeOnAdvice() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
	if err != nil {
		return false
	}
	mode := string(b) // "always within_size [advise] never deny force"
	return strings.Contains(mode, "[advise]") || strings.Contains(mode, "[within_size]") || strings.Contains(mode, "[always]")
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
	adviseHuge(mem) // the creator's huge pages are mapped huge here too
	return mem, nil
}

func unmap(mem []byte) error {
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("shm: munmap: %w", err)
	}
	return nil
}
