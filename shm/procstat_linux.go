//go:build linux

package shm

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// procStat reads the state letter and the start time (clock ticks since boot,
// field 22) of pid from /proc. ok is false when the process does not exist.
func procStat(pid int) (state byte, start uint64, ok bool) {
	var buf [512]byte
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	n, err := f.Read(buf[:])
	f.Close()
	if err != nil || n == 0 {
		return 0, 0, false
	}
	b := buf[:n]
	// comm may hold spaces and parentheses: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	fields := bytes.Fields(b[i+2:])
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], start, true
}

// processAlive reports whether pid runs and, when start is not zero, is the
// same process that had that start time (not a later one given the same pid).
// A zombie counts as dead: it runs no code and will hold nothing again.
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	state, st, ok := procStat(pid)
	if !ok {
		// /proc may be hidden; fall back on kill(pid, 0).
		if _, err := os.Stat("/proc/self/stat"); err == nil {
			return false
		}
		return syscall.Kill(pid, 0) != syscall.ESRCH
	}
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return start == 0 || st == start
}

// selfStartTime returns this process's start time, or 0 if unknown.
func selfStartTime() uint64 {
	_, st, _ := procStat(os.Getpid())
	return st
}
