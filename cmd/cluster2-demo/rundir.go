package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cluster2/cluster2/internal/safefs"
	"github.com/cluster2/cluster2/shm"
)

// The run directory holds demo.json (how the control commands find the
// master) and pids/ (the master's and workers' pid files). Under /tmp (no
// XDG_RUNTIME_DIR) another user may create it first, or plant a symlink in
// it; so:
//
//   - it is created 0700, and one that is a symlink, not a directory, not
//     owned by this user, or writable by group or others is refused
//     (nothing in it is trusted or written);
//   - files are opened with O_NOFOLLOW, and demo.json is written to a new
//     file (.demo.json.tmp, O_EXCL) renamed over the old, so a planted
//     symlink is never followed (package internal/safefs owns these
//     checks for the whole module);
//   - demo.json records the master's pid, executable and start time
//     (/proc/PID/stat's starttime), and stop and reload signal a pid only if
//     it is a live process of this user running that executable (named as
//     this program is) since that same start time: a stale demo.json (its
//     pid reused by another process) or a forged one naming another program
//     signals nothing.
//
// A master killed with SIGKILL leaves demo.json and pid files; the next
// master started on the same run directory removes a demo.json whose master
// is not running (and refuses to start while it is), and package master's
// Start removes the pid files of dead pids (Config.PidDir). Whether a pid
// lives is shm.ProcessAlive's answer (dead only on proof), and its start
// time shm.ProcessStartTime's, everywhere.

// errRunDir is wrapped by every refusal of a run directory or its files.
var errRunDir = errors.New("unsafe run directory")

// errNotMaster is wrapped when demo.json's pid is not this demo's master.
var errNotMaster = errors.New("not this demo's master")

// secureRunDir creates dir (0700) if it does not exist and create is set,
// and checks that it is a real directory of this user that no one else may
// write in (safefs.PrepareDir, safefs.CheckDir): a refusal wraps errRunDir
// and safefs.ErrUnsafeDir.
func secureRunDir(dir string, create bool) error {
	var err error
	if create {
		err = safefs.PrepareDir(dir, 0)
	} else {
		err = safefs.CheckDir(dir, 0)
	}
	return runDirError(err)
}

// runDirError wraps a safefs refusal in errRunDir (other errors name the
// run directory's path already).
func runDirError(err error) error {
	if errors.Is(err, safefs.ErrUnsafeDir) || errors.Is(err, safefs.ErrUnsafeFile) {
		return fmt.Errorf("%w: %w", errRunDir, err)
	}
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return nil
}

// state is what the master writes to demo.json for the control commands.
type state struct {
	Pid     int    `json:"pid"`
	Addr    string `json:"addr"`
	Monitor string `json:"monitor"`
	Exe     string `json:"exe"`   // the master's executable (/proc/PID/exe)
	Start   uint64 `json:"start"` // the master's start time, /proc/PID/stat field 22 (clock ticks since boot)
}

// writeState writes st to dir/demo.json through a new file renamed over the
// old (safefs.WriteFileAtomic): a symlink planted as demo.json is replaced,
// never followed.
func writeState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return safefs.WriteFileAtomic(dir, "demo.json", b, 0o600)
}

// readState reads dir/demo.json, refusing a symlink and a file that is not
// a regular file of this user.
func readState(dir string) (state, error) {
	var st state
	if err := secureRunDir(dir, false); err != nil {
		return st, err
	}
	path := filepath.Join(dir, "demo.json")
	f, err := safefs.OpenNoFollow(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, safefs.ErrUnsafeFile) {
		return st, runDirError(err)
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	if err := safefs.CheckOwnedFile(f); err != nil {
		return st, runDirError(err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// selfState returns this process's pid, executable and start time.
func selfState() (state, error) {
	pid := os.Getpid()
	exe, err := procExe(pid)
	if err != nil {
		return state{}, err
	}
	start, err := shm.ProcessStartTime(pid)
	if err != nil {
		return state{}, err
	}
	return state{Pid: pid, Exe: exe, Start: start}, nil
}

// procExe returns the executable of pid, without the " (deleted)" of a
// binary replaced since it started (a rebuilt demo).
func procExe(pid int) (string, error) {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(exe, " (deleted)"), nil
}

// procUID returns pid's real user id (/proc/PID/status).
func procUID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no Uid", pid)
}

// verifyMaster checks that st.Pid is this demo's live master: running (not
// a zombie), of this user, running the executable demo.json recorded (with
// this program's name), started when demo.json says.
func verifyMaster(st state) error {
	if st.Pid <= 1 {
		return fmt.Errorf("%w: pid %d", errNotMaster, st.Pid)
	}
	if !shm.ProcessAlive(st.Pid, st.Start) {
		return fmt.Errorf("master %d is not running", st.Pid)
	}
	self, err := procExe(os.Getpid())
	if err != nil {
		return err
	}
	exe, err := procExe(st.Pid)
	if err != nil {
		return fmt.Errorf("%w: pid %d: %v", errNotMaster, st.Pid, err)
	}
	// The same program: the executable demo.json recorded, named as this
	// one is (not the same path: "go run" builds each run elsewhere).
	if exe != st.Exe || filepath.Base(exe) != filepath.Base(self) {
		return fmt.Errorf("%w: pid %d runs %s (demo.json says %q, this is %s)", errNotMaster, st.Pid, exe, st.Exe, self)
	}
	if uid, err := procUID(st.Pid); err != nil || uid != os.Getuid() {
		return fmt.Errorf("%w: pid %d belongs to uid %d (%v)", errNotMaster, st.Pid, uid, err)
	}
	if start, err := shm.ProcessStartTime(st.Pid); err != nil || start != st.Start {
		return fmt.Errorf("%w: pid %d started at %d, demo.json's master at %d (%v)", errNotMaster, st.Pid, start, st.Start, err)
	}
	return nil
}

// prepareRunDir secures dir and removes a demo.json whose master is not
// running (what a master killed with SIGKILL left), or is this process (an
// in-place upgrade's next image). A live master on dir is
// an error: two masters would share demo.json. The pid files in dir/pids
// are the master package's: Start checks that directory and removes the
// pid files of dead pids itself.
func prepareRunDir(dir string) (removed []string, err error) {
	if err := secureRunDir(dir, true); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "demo.json")
	if _, err := os.Lstat(path); err == nil {
		st, rerr := readState(dir)
		// This very process is no other master: it is the next image of
		// an upgrading master (the same pid), which rewrites demo.json.
		if rerr == nil && st.Pid != os.Getpid() && verifyMaster(st) == nil {
			return nil, fmt.Errorf("master %d already runs on %s (stop it, or another -rundir)", st.Pid, dir)
		}
		if os.Remove(path) == nil {
			removed = append(removed, path)
		}
	}
	return removed, nil
}
