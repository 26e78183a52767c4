package cluster2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

// Check runs the binary exe in check mode and returns its build: the check
// that proves a new binary starts before it replaces anything. The master
// runs it before a rolling restart's first successor (SIGHUP,
// Cluster.RollingRestart, the monitor's action: master.Config.Check,
// bounded by Config.ReplaceTimeout) and before an in-place upgrade.
//
// The child runs with args (its argv, args[0] included, as master.Config.Args;
// nil: os.Args) and env (nil: os.Environ()) plus CLUSTER2_ROLE=check. The
// user's main runs as in any process up to Listen (CurrentRole returns
// Checking), and Listen, once the Config's defaults and ranges are
// applied, writes the build's information as one JSON line to fd 3 and
// exits 0, having created nothing. The check bounds the child by ctx: past
// it the child and its process group are killed.
//
// Every failure is an error wrapping ErrCheckFailed whose message says why:
// the file is missing (wraps syscall.ENOENT), not executable (EACCES), not
// a program for this system (ENOEXEC: another architecture), the child
// exited with a status (the message ends with the tail of its stderr: a
// panic in an init function shows there) or did not answer in time, it
// exited 0 without its build's information (not a cluster2 program, or one
// that never reached Listen), it was built for another GOOS/GOARCH, or it
// speaks another Layout (wraps ErrLayoutMismatch too).
func Check(ctx context.Context, exe string, args, env []string) (BuildInfo, error) {
	if args == nil {
		args = os.Args
	}
	if env == nil {
		env = os.Environ()
	}
	fail := func(format string, a ...any) (BuildInfo, error) {
		return BuildInfo{}, fmt.Errorf("%w: %s: "+format, append([]any{ErrCheckFailed, exe}, a...)...)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail("%w", err)
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Args = append([]string{exe}, args[min(1, len(args)):]...)
	if len(args) > 0 {
		cmd.Args[0] = args[0]
	}
	cmd.Env = proc.ChildEnv(env, proc.RoleCheck, 0, os.Getpid())
	cmd.ExtraFiles = []*os.File{w} // proc.CheckFD
	stderr := &tailBuffer{max: checkTail}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fail("%s: %w", startHint(err), err)
	}
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, checkMax))
		out <- b
	}()
	werr := cmd.Wait()
	if errors.Is(werr, exec.ErrWaitDelay) {
		werr = nil // it exited 0; a process it left behind holds its stderr (killed below)
	}
	var line []byte
	select {
	case line = <-out:
	case <-time.After(time.Second):
		// A process it left behind holds the pipe (the line came before the
		// exit, or never): it is in the child's process group, which exists
		// while it lives (so the number names no other group): kill it.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		r.Close()
		line = <-out
	}
	switch {
	case werr != nil && ctx.Err() != nil:
		return fail("no answer in time (%w): killed%s", ctx.Err(), stderr.suffix())
	case werr != nil:
		return fail("%w%s", werr, stderr.suffix())
	}
	line, _, _ = bytes.Cut(line, []byte("\n"))
	if len(bytes.TrimSpace(line)) == 0 {
		return fail("exited 0 without its build's information on fd %d (not a cluster2 program, or one that never reached cluster2.Listen)%s",
			proc.CheckFD, stderr.suffix())
	}
	var info BuildInfo
	if err := json.Unmarshal(line, &info); err != nil {
		return fail("its build's information %.100q: %w", line, err)
	}
	if info.OS != runtime.GOOS || info.Arch != runtime.GOARCH {
		return info, fmt.Errorf("%w: %s (version %s) is built for %s/%s (another architecture), this process runs on %s/%s",
			ErrCheckFailed, exe, info.Version, info.OS, info.Arch, runtime.GOOS, runtime.GOARCH)
	}
	if err := ThisLayout().Compatible(info.Layout); err != nil {
		return info, fmt.Errorf("%w: %s (version %s): %w", ErrCheckFailed, exe, info.Version, err)
	}
	return info, nil
}

const (
	checkTail = 2048    // bytes of the child's stderr an error keeps
	checkMax  = 1 << 16 // bytes of fd 3 read
)

// startHint names the usual causes of an exec failure.
func startHint(err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return "the file is missing"
	case errors.Is(err, syscall.EACCES):
		return "the file is not executable"
	case errors.Is(err, syscall.ENOEXEC):
		return "not a program for this system (another architecture?)"
	}
	return "cannot execute it"
}

// runCheck is Listen in a process started in check mode: it writes the
// build's information (under c, defaults applied) as one JSON line to
// proc.CheckFD and exits 0; a descriptor it cannot write exits 2.
func runCheck(c Config) {
	b, _ := json.Marshal(buildInfo(c))
	f := os.NewFile(proc.CheckFD, "check")
	if _, err := f.Write(append(b, '\n')); err != nil {
		fmt.Fprintf(os.Stderr, "cluster2: check mode: fd %d: %v\n", proc.CheckFD, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// suffix returns ": stderr: <tail>" for an error's message, "" when the
// child wrote nothing.
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	return "; its stderr ends: " + s
}
