//go:build linux

package shm

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// errStatFormat is procStat's error for a stat line it cannot parse: it
// proves nothing about the process.
var errStatFormat = errors.New("shm: unexpected /proc/PID/stat format")

// procStat reads the state letter and the start time (clock ticks since boot,
// field 22) of pid from /proc. The error is the open's or the read's (an
// ENOENT or ESRCH says that the process does not exist; any other, such as
// EMFILE in a process out of descriptors, says nothing about it), or
// errStatFormat.
func procStat(pid int) (state byte, start uint64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	var buf [512]byte
	n, err := f.Read(buf[:])
	f.Close()
	if err != nil {
		return 0, 0, err
	}
	return parseStat(buf[:n])
}

// parseStat returns the state letter and the start time of a stat line.
func parseStat(b []byte) (state byte, start uint64, err error) {
	// comm may hold spaces and parentheses: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, errStatFormat
	}
	fields := bytes.Fields(b[i+2:])
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 {
		return 0, 0, errStatFormat
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, errStatFormat
	}
	return fields[0][0], start, nil
}

// processAlive reports whether pid runs and, when start is not zero, is the
// same process that had that start time (not a later one given the same pid).
// A zombie counts as dead: it runs no code and will hold nothing again.
//
// It says dead only on proof, because a false "dead" hands a live process's
// lock, slot, ring end or lease to another (mutual exclusion broken), while a
// false "alive" only delays a takeover until the next check. Proof is: a stat
// line showing a zombie or another start time; ENOENT or ESRCH from
// /proc/PID/stat while /proc is mounted; or ESRCH from kill(pid, 0). When
// /proc cannot tell (EMFILE or ENFILE in a process out of descriptors, ENOMEM,
// an unreadable line, /proc not mounted), kill(pid, 0) decides, and anything
// but ESRCH counts as alive: a pid reused meanwhile, or a zombie, then looks
// alive until /proc can be read again.
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	state, st, err := procStat(pid)
	switch {
	case err == nil:
		if state == 'Z' || state == 'X' || state == 'x' {
			return false
		}
		return start == 0 || st == start
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH):
		// No /proc/PID: the process is gone, if /proc is there at all (a
		// stat of a path takes no descriptor).
		if _, serr := os.Stat("/proc/self/stat"); serr == nil {
			return false
		}
	}
	return syscall.Kill(pid, 0) != syscall.ESRCH
}

// selfStartTime returns this process's start time as other processes read
// it (procStat of our pid), or 0 if unknown. It opens "PID/stat" relative to
// a descriptor of /proc rather than by its absolute path: an emulator
// (qemu-user) intercepts the paths /proc/self/stat and /proc/PID/stat of the
// process it runs and fakes the line (its start time is one tick off the
// kernel's), and every other process would then judge us dead.
func selfStartTime() uint64 {
	dir, err := syscall.Open("/proc", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer syscall.Close(dir)
	fd, err := syscall.Openat(dir, strconv.Itoa(os.Getpid())+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer syscall.Close(fd)
	var buf [512]byte
	n, err := syscall.Read(fd, buf[:])
	if err != nil || n <= 0 {
		return 0
	}
	_, st, err := parseStat(buf[:n])
	if err != nil {
		return 0
	}
	return st
}
