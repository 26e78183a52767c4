//go:build linux

package shm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
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

// selfStart caches this process's start time once read (it never changes):
// a later Join out of descriptors records it without opening anything.
var selfStart atomic.Uint64

// init reads this process's start time while it has descriptors to spare
// (see "Who is dead" in doc.go).
func init() { selfStartTime() }

// userHZ is the unit of /proc's start times: ticks per second (USER_HZ,
// 100 on every architecture Go runs Linux on; sysconf(_SC_CLK_TCK)).
const userHZ = 100

// bootNanos returns CLOCK_BOOTTIME in nanoseconds, the clock /proc's start
// times count (in ticks), or 0 if it cannot be read.
func bootNanos() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// slotAlive is processAlive for a live slot's owner, whose start time may be
// unknown (0: it could not read it when it joined). Then a process now under
// pid that started after joinedBoot, the owner's CLOCK_BOOTTIME at its join,
// is not the owner: the pid was reused, and the owner is dead. See "Who is
// dead" in doc.go for the argument.
func slotAlive(pid int, start uint64, joinedBoot int64) bool {
	if start == 0 && joinedBoot > 0 && pid > 0 && pid != os.Getpid() {
		state, st, err := procStat(pid)
		if err == nil && state != 'Z' && state != 'X' && state != 'x' && startedAfter(st, joinedBoot) {
			return false
		}
	}
	return processAlive(pid, start)
}

// startedAfter reports whether a process of start time st (ticks since
// boot, rounded down from its start) started after boot nanoseconds t:
// st×10 ms > t, which is st > ⌊t / 10 ms⌋.
func startedAfter(st uint64, t int64) bool {
	const tickNanos = 1e9 / userHZ
	return st > uint64(t)/tickNanos
}

// selfStartTime returns this process's start time as other processes read
// it (procStat of our pid), or 0 if unknown. The first read that succeeds is
// kept (init makes it early). It opens "PID/stat" relative to
// a descriptor of /proc rather than by its absolute path: an emulator
// (qemu-user) intercepts the paths /proc/self/stat and /proc/PID/stat of the
// process it runs and fakes the line (its start time is one tick off the
// kernel's), and every other process would then judge us dead.
func selfStartTime() uint64 {
	if st := selfStart.Load(); st != 0 {
		return st
	}
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
	selfStart.Store(st)
	return st
}

// ProcessAlive reports whether pid is a live process and, when start is not
// zero, the same process that had that start time (see [ProcessStartTime]),
// not a later one given the same pid. A zombie counts as dead.
//
// It is the check [Arena.Alive] and [Arena.ReleaseSlot] make, exported so
// that every owner of a pid (pid files, a control command's state file) asks
// the same question: it answers false only on proof of death (ENOENT or
// ESRCH from /proc/PID/stat while /proc is mounted, ESRCH from kill(pid, 0),
// a zombie, another start time). When /proc cannot tell (EMFILE in a process
// out of descriptors, EPERM, /proc not mounted), anything but ESRCH from
// kill(pid, 0) counts as alive. So false is safe to act on (remove the pid's
// files, take over what it held); true is not proof of identity: before
// signalling pid, compare [ProcessStartTime] with the one recorded.
func ProcessAlive(pid int, start uint64) bool { return processAlive(pid, start) }

// ProcessStartTime returns pid's start time as every process reads it:
// field 22 of /proc/PID/stat, in clock ticks since boot. Together with the
// pid it names one process: a pid reused later has another start time. For
// this process it is read relative to a descriptor of /proc, as
// [Arena.Join] records it (qemu-user fakes /proc/self/stat). The error is
// the open's or the read's (ENOENT or ESRCH: no such process), or one for a
// line it cannot parse.
func ProcessStartTime(pid int) (uint64, error) {
	if pid == os.Getpid() {
		if st := selfStartTime(); st != 0 {
			return st, nil
		}
	}
	_, st, err := procStat(pid)
	if errors.Is(err, errStatFormat) {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, err
}
