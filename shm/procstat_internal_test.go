//go:build linux

package shm

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// TestProcessAliveNeedsProofOfDeath: a process out of descriptors cannot
// open /proc/PID/stat (EMFILE); that proves nothing, and a live process must
// still be seen alive, while a dead one is still seen dead (kill(pid, 0)
// says ESRCH). With descriptors, a zombie and a process with another start
// time (a reused pid) are dead.
func TestProcessAliveNeedsProofOfDeath(t *testing.T) {
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	_, start, err := procStat(live.Process.Pid)
	if err != nil {
		t.Fatalf("procStat of a live child: %v", err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	zombie := exec.Command("sleep", "60")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	defer zombie.Wait()
	syscall.Kill(zombie.Process.Pid, syscall.SIGKILL) // not reaped until the end: a zombie
	for range 1000 {
		if st, _, err := procStat(zombie.Process.Pid); err == nil && st == 'Z' {
			break
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 1e6}, nil)
	}

	check := func(when string) {
		t.Helper()
		if !processAlive(live.Process.Pid, start) {
			t.Errorf("%s: a live process (pid %d, start %d) judged dead", when, live.Process.Pid, start)
		}
		if !processAlive(live.Process.Pid, 0) {
			t.Errorf("%s: a live process (pid %d, any start) judged dead", when, live.Process.Pid)
		}
		if processAlive(dead.Process.Pid, 0) {
			t.Errorf("%s: a reaped process (pid %d) judged alive", when, dead.Process.Pid)
		}
	}
	check("with descriptors")
	if processAlive(live.Process.Pid, start+1) {
		t.Errorf("a process with another start time (a reused pid) judged alive")
	}
	if processAlive(zombie.Process.Pid, 0) {
		t.Errorf("a zombie judged alive")
	}
	restore := exhaustDescriptors(t)
	check("out of descriptors")
	restore()
}

// TestSelfStartTimeIsWhatOthersRead: the start time a process stores in its
// slot must be the one other processes read for it in /proc/PID/stat (under
// qemu-user, /proc/self/stat is faked and was one tick off, so every peer
// judged the process dead).
func TestSelfStartTimeIsWhatOthersRead(t *testing.T) {
	out, err := exec.Command("cat", "/proc/"+strconv.Itoa(os.Getpid())+"/stat").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := parseStat(out)
	if err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	if got := selfStartTime(); got != want || got == 0 {
		t.Fatalf("selfStartTime() = %d; another process reads %d", got, want)
	}
}
