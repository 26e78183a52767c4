//go:build linux

package shm_test

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/shm/shmtest"
)

// joinRole marks the slot of childJoinOutOfFDs.
const joinRole = 77

// childJoinOutOfFDs maps the inherited arena, uses up its descriptors (a
// soft RLIMIT_NOFILE of 64, /dev/null opened until EMFILE: /proc cannot be
// opened any more), joins, and sleeps.
func childJoinOutOfFDs() {
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	// The runtime's poller needs a descriptor (epoll) once: make it now.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	time.Sleep(time.Millisecond)
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err == nil {
		lim.Max = old.Max
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "child: setrlimit:", err)
		os.Exit(2)
	}
	for {
		if _, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
			break
		}
	}
	if f, err := os.Open("/proc/self/stat"); !errors.Is(err, syscall.EMFILE) {
		fmt.Fprintln(os.Stderr, "child: /proc/self/stat opens out of descriptors:", f, err)
		os.Exit(2)
	}
	if _, err := a.Join(joinRole); err != nil {
		fmt.Fprintln(os.Stderr, "child: join:", err)
		os.Exit(2)
	}
	time.Sleep(time.Hour)
}

// TestJoinOutOfDescriptorsRecordsStartTime: a process that joins while it
// cannot open a file still records its start time (read when the package
// was loaded), so its pid can later be checked against reuse.
func TestJoinOutOfDescriptorsRecordsStartTime(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	c := spawn(t, a, "joinoutoffds")
	defer func() { c.cmd.Process.Kill(); <-c.done }()
	pid := c.cmd.Process.Pid
	var got shm.SlotInfo
	if !xtesting.Eventually(10*time.Second, func() bool {
		for _, s := range a.Slots() {
			if s.Pid == pid && s.Role == joinRole {
				got = s
				return true
			}
		}
		select {
		case err := <-c.done:
			t.Fatalf("the child exited before joining: %v", err)
		default:
		}
		return false
	}) {
		t.Fatal("the child never joined")
	}
	want, err := shm.ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got.StartTime != want {
		t.Fatalf("the slot of a process that joined out of descriptors has start time %d; /proc says %d", got.StartTime, want)
	}
	if !a.Alive(got.Token) {
		t.Fatal("the joined child judged dead")
	}
}
