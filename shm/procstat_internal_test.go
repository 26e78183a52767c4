//go:build linux

package shm

import (
	"errors"
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

// TestUnknownStartTimeStillProvesReuse: a slot whose owner could not read
// its start time (0) must not let a later process under the same pid pass
// as the owner. The slot's joinedBoot decides: a process that started after
// the join is another one (the slot is reclaimed, its token dead); one that
// started before it may be the owner (busy, alive).
func TestUnknownStartTimeStillProvesReuse(t *testing.T) {
	a, err := Create(Options{Size: 1 << 20, Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	beforeStart := bootNanos()
	syscall.Nanosleep(&syscall.Timespec{Nsec: 30e6}, nil) // more than a tick
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	pid := sleep.Process.Pid
	plant := func(joinedBoot int64) uint32 {
		s := &a.slots[2]
		tok := a.newToken()
		s.token.Store(tok)
		s.startTime.Store(0) // the owner could not read it
		s.joinedBoot.Store(joinedBoot)
		s.word.Store(slotWord(pid, slotLive))
		return tok
	}
	// Joined after the sleep started: it may be the owner.
	tok := plant(bootNanos())
	if !a.Alive(tok) {
		t.Errorf("an owner of unknown start time that may be the live process under its pid judged dead")
	}
	if err := a.ReleaseSlot(2); !errors.Is(err, ErrSlotBusy) {
		t.Errorf("ReleaseSlot of that slot = %v; want ErrSlotBusy", err)
	}
	// Joined before the sleep started: the sleep reuses the owner's pid.
	tok = plant(beforeStart)
	if a.Alive(tok) {
		t.Errorf("a process that started after the join (a reused pid) passed as the owner of unknown start time")
	}
	if err := a.ReleaseSlot(2); err != nil {
		t.Errorf("ReleaseSlot of a reused pid's slot = %v; want it reclaimed", err)
	}
	// A live slot of a version-3 writer (no joinedBoot): alive, as before.
	tok = plant(0)
	if !a.Alive(tok) {
		t.Errorf("an owner of unknown start time and no joinedBoot judged dead")
	}
}
