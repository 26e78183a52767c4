package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// runDemoFails runs the demo on rundir and returns its stderr, failing
// unless it exits non-zero within 30 s.
func runDemoFails(t *testing.T, rundir string) string {
	t.Helper()
	r := clustertest.Run(t, 30*time.Second, "demo", "DEMO_ARGS=-addr 127.0.0.1:0 -monitor 127.0.0.1:0 -workers 1 -rundir "+rundir)
	if r.Code == 0 {
		t.Fatalf("the demo on %s exited 0; want a refusal", rundir)
	}
	return r.Stderr
}

// Item 11 of issue 13: a run directory another user planted is refused,
// and a demo.json symlink is never followed.
func TestRunDirPlanted(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	intact := func() {
		t.Helper()
		if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
			t.Fatalf("the symlink's target was written: %q, %v", b, err)
		}
	}
	// A directory open to everyone (what another user makes under /tmp)
	// with demo.json a symlink to the victim: refused, victim intact.
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	os.Symlink(victim, filepath.Join(open, "demo.json"))
	if out := runDemoFails(t, open); !strings.Contains(out, "unsafe run directory") {
		t.Errorf("demo on a 0777 directory: %q; want an unsafe run directory refusal", out)
	}
	if err := control("stop", open, ""); !errors.Is(err, errRunDir) {
		t.Errorf("stop on a 0777 directory: %v; want errRunDir", err)
	}
	intact()
	// The run directory itself a symlink.
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(real, link)
	if out := runDemoFails(t, link); !strings.Contains(out, "is a symlink") {
		t.Errorf("demo on a symlinked run directory: %q; want a refusal", out)
	}
	// Another user's directory (root only can make one here).
	if os.Geteuid() == 0 {
		theirs := filepath.Join(t.TempDir(), "theirs")
		os.Mkdir(theirs, 0o755)
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		os.Symlink(victim, filepath.Join(theirs, "demo.json"))
		if out := runDemoFails(t, theirs); !strings.Contains(out, "owned by uid 65534") {
			t.Errorf("demo on another user's directory: %q; want a refusal", out)
		}
		intact()
	}
	// Our own directory with a demo.json symlink (say, left over): the demo
	// starts and replaces the link, never writing through it.
	mine := t.TempDir()
	os.Symlink(victim, filepath.Join(mine, "demo.json"))
	if err := control("stop", mine, ""); !errors.Is(err, errRunDir) {
		t.Errorf("stop with demo.json a symlink: %v; want errRunDir", err)
	}
	d := startDemoIn(t, mine, "")
	intact()
	if fi, err := os.Lstat(filepath.Join(mine, "demo.json")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("demo.json: %v, %v; want a regular 0600 file", fi, err)
	}
	if err := control("status", mine, ""); err != nil {
		t.Fatalf("status: %v", err)
	}
	d.Kill()
	// A default run directory the demo creates is 0700.
	fresh := filepath.Join(t.TempDir(), "fresh")
	d = startDemoIn(t, fresh, "")
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created run directory: %v, %v; want mode 0700", fi, err)
	}
	d.Kill()
}

// Item 11: stop and reload signal only this demo's master. A forged
// demo.json naming another process (a sleep) signals nothing, whatever it
// claims of its executable and start time.
func TestControlRefusesForeignPid(t *testing.T) {
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleep.Wait() }()
	defer sleep.Process.Kill()
	pid := sleep.Process.Pid
	sleepExe, _ := procExe(pid)
	sleepStart, _ := shm.ProcessStartTime(pid)
	self, _ := procExe(os.Getpid())
	selfStart, _ := shm.ProcessStartTime(os.Getpid())
	dir := t.TempDir()
	for _, forged := range []string{
		fmt.Sprintf(`{"pid":%d}`, pid),
		fmt.Sprintf(`{"pid":%d,"exe":%q,"start":%d}`, pid, sleepExe, sleepStart), // all true of the sleep
		fmt.Sprintf(`{"pid":%d,"exe":%q,"start":%d}`, pid, self, sleepStart),     // claims our executable
		fmt.Sprintf(`{"pid":%d,"exe":%q,"start":%d}`, os.Getpid(), self, selfStart+1),
		`{"pid":1}`, `{"pid":-1}`, `{"pid":0}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, "demo.json"), []byte(forged), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"stop", "reload"} {
			if err := control(cmd, dir, ""); err == nil {
				t.Errorf("%s with demo.json %s: nil error; want a refusal", cmd, forged)
			}
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("the sleep was signalled: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if !shm.ProcessAlive(pid, 0) {
		t.Fatal("the sleep is gone")
	}
}

// Item 6 of issue 13, the demo's part: kill -9 of the master leaves
// demo.json and the pid files; the next start on the same run directory
// removes those of dead pids only, and a start while a master runs is
// refused.
func TestKill9LeftoversRemovedAtNextStart(t *testing.T) {
	rundir := filepath.Join(t.TempDir(), "run")
	d := startDemoIn(t, rundir, "")
	pids := filepath.Join(rundir, "pids")
	before, _ := filepath.Glob(filepath.Join(pids, "*.pid"))
	if len(before) != 3 {
		t.Fatalf("pid files: %v; want the master's and 2 workers'", before)
	}
	if out := runDemoFails(t, rundir); !strings.Contains(out, "already runs") {
		t.Errorf("a second demo on a live master's run directory: %q; want a refusal", out)
	}
	var old []int
	for _, p := range before {
		f := strings.Split(filepath.Base(p), ".")
		n, _ := strconv.Atoi(f[1])
		old = append(old, n)
	}
	d.Kill()
	if !xtesting.Eventually(10*time.Second, func() bool {
		for _, p := range old {
			if shm.ProcessAlive(p, 0) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the killed cluster's processes %v still run", old)
	}
	for _, p := range append(before, filepath.Join(rundir, "demo.json")) {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s gone after kill -9 (%v): nothing to test", p, err)
		}
	}
	// A live process's pid file (a sleep's) must stay.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	live := filepath.Join(pids, fmt.Sprintf("worker.%d.pid", sleep.Process.Pid))
	os.WriteFile(live, []byte(strconv.Itoa(sleep.Process.Pid)), 0o600)

	d2 := startDemoIn(t, rundir, "")
	defer d2.Kill()
	if d2.st.Pid == d.st.Pid {
		t.Fatalf("demo.json still names the killed master %d", d.st.Pid)
	}
	for _, p := range before {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s (a dead pid's) still there after the next start", p)
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live pid's file was removed: %v", err)
	}
	if err := syscall.Kill(sleep.Process.Pid, 0); err != nil {
		t.Errorf("the sleep: %v", err)
	}
}
