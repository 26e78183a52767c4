package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// Spec says which cluster a test starts and how it knows it is up.
type Spec struct {
	// Child is the name of the xtesting child that runs the cluster's main
	// (the test binary re-executed; its master re-executes it as workers).
	Child string
	// Env is added to the child's environment (and so to its workers').
	Env []string
	// Ready reports whether a line of the master's output says that the
	// cluster is up. Nil: a "READY <addr> <control> [<monitor>]" line, as
	// [Serve] prints, whose fields fill Addr, Ctl and Mon.
	Ready func(line string) bool
	// ReadyTimeout bounds the wait for the ready line; 0 means 60 s.
	ReadyTimeout time.Duration
	// Wrap, when set, rewrites the command before it starts: a launcher
	// that execs the master, such as systemd-socket-activate.
	Wrap func(cmd *exec.Cmd)
}

// keptLines is how many lines of a child's output a Process keeps for the
// log of a failed test.
const keptLines = 400

// Process is a cluster a test started as a child process: its master, with
// the master's process group (its workers and auxiliary processes). The
// group's stdout is read line by line (the ready line, then Lines), and the
// last lines of its stdout and stderr are logged when the test fails.
// Whatever the test did, the whole group is killed with SIGKILL and reaped
// when the test ends.
type Process struct {
	tb  testing.TB
	Cmd *exec.Cmd
	// Addr is the cluster's shared socket, Ctl the master's test control
	// server ([ControlMux]) and Mon its monitor ("" when off): the fields of
	// the READY line, once WaitReady returned.
	Addr, Ctl, Mon string
	// ReadyLine is the line that said the cluster is up.
	ReadyLine string
	// Client is what Control and Monitor call with: its connections are
	// kept alive (a test that exhausts the master's descriptors relies on
	// that). Its Timeout may be changed before use.
	Client *http.Client

	ready   chan struct{} // closed once the ready line came (or an error line)
	dead    chan struct{} // closed once the master was reaped
	lines   chan string   // output lines other than the ready line
	mu      sync.Mutex
	out     []string // the last keptLines lines of output
	failure string   // a LISTEN-ERROR line before the ready line
	timeout time.Duration
}

// Start starts the child named child with env and waits for its READY line.
func Start(tb testing.TB, child string, env ...string) *Process {
	tb.Helper()
	return Spec{Child: child, Env: env}.Start(tb)
}

// Start starts s and waits for its ready line (see [Process.WaitReady]).
func (s Spec) Start(tb testing.TB) *Process {
	tb.Helper()
	p := s.Launch(tb)
	p.WaitReady()
	return p
}

// Launch starts s and returns at once: a test that watches the cluster come
// up (its monitor answers before the workers are warm) calls WaitReady when
// it needs the cluster up.
func (s Spec) Launch(tb testing.TB) *Process {
	tb.Helper()
	cmd := xtesting.Command(tb, s.Child, nil, s.Env...)
	if s.Wrap != nil {
		s.Wrap(cmd)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = nil // xtesting's os.Stderr: read here instead
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	xtesting.Start(tb, cmd)
	p := &Process{
		tb: tb, Cmd: cmd, Client: &http.Client{Timeout: 2 * time.Minute},
		ready: make(chan struct{}), dead: make(chan struct{}), lines: make(chan string, 1000),
		timeout: s.ReadyTimeout,
	}
	if p.timeout == 0 {
		p.timeout = 60 * time.Second
	}
	isReady := s.Ready
	if isReady == nil {
		isReady = func(l string) bool {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "READY" {
				return false
			}
			p.Addr, p.Ctl = f[1], f[2]
			if len(f) > 3 && f[3] != "-" {
				p.Mon = f[3]
			}
			return true
		}
	}
	var reading sync.WaitGroup
	reading.Go(func() { // stderr: kept for the log of a failed test
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.keep(sc.Text())
		}
	})
	reading.Go(func() { // stdout: the ready line, then Lines
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		up := false
		for sc.Scan() {
			l := sc.Text()
			p.keep(l)
			switch {
			case !up && isReady(l):
				p.ReadyLine, up = l, true
				close(p.ready)
				continue
			case !up && strings.HasPrefix(l, "LISTEN-ERROR"):
				p.failure, up = l, true
				close(p.ready)
			}
			select {
			case p.lines <- l:
			default:
			}
		}
	})
	go func() {
		// Every process of the group holds the pipes: EOF once they all
		// exited (or closed them), then the master is reaped.
		reading.Wait()
		cmd.Wait()
		close(p.dead)
		close(p.lines)
	}()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			p.mu.Lock()
			tb.Logf("output of the cluster %s (master %d):\n%s", s.Child, cmd.Process.Pid, strings.Join(p.out, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

func (p *Process) keep(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.out) == keptLines {
		p.out = append(p.out[:0], p.out[1:]...)
	}
	p.out = append(p.out, l)
}

// WaitReady waits for the ready line; it fails the test if the master
// printed LISTEN-ERROR or exited first, or after the Spec's ReadyTimeout.
func (p *Process) WaitReady() {
	p.tb.Helper()
	select {
	case <-p.ready:
	case <-p.dead:
		select {
		case <-p.ready:
		default:
			p.tb.Fatalf("the master exited before READY")
		}
	case <-time.After(p.timeout):
		p.tb.Fatalf("no READY from the master after %v", p.timeout)
	}
	if p.failure != "" {
		p.tb.Fatalf("master: %s", p.failure)
	}
}

// ReadyAgain waits up to d for the next "READY <addr> <control>
// [<monitor>]" line among Lines (the master's next image prints one after
// an in-place upgrade: its control server listens on a new port) and takes
// its addresses; none fails the test.
func (p *Process) ReadyAgain(d time.Duration) {
	p.tb.Helper()
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.tb.Fatalf("the master exited before its next READY")
			}
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "READY" {
				continue
			}
			p.Addr, p.Ctl, p.ReadyLine = f[1], f[2], l
			if len(f) > 3 && f[3] != "-" {
				p.Mon = f[3]
			}
			return
		case <-deadline:
			p.tb.Fatalf("no READY line from the master's next image within %v", d)
		}
	}
}

// WaitUpgrade waits up to d until the monitor's /status says an in-place
// upgrade that started at or after since ended, and returns it (State
// "done" or "failed"); the last state seen and an error when none ended.
func (p *Process) WaitUpgrade(since time.Time, d time.Duration) (cluster2.UpgradeStatus, error) {
	var u cluster2.UpgradeStatus
	ok := xtesting.Eventually(d, func() bool {
		resp, err := p.Client.Get("http://" + p.Mon + "/status")
		if err != nil {
			return false
		}
		var st map[string]json.RawMessage // status name → pid → value
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		var up map[string]cluster2.UpgradeStatus
		if err != nil || json.Unmarshal(st[cluster2.StatusUpgrade], &up) != nil {
			return false
		}
		u = up[strconv.Itoa(p.Pid())]
		return !u.Started.Before(since) && (u.State == "done" || u.State == "failed")
	})
	if !ok {
		return u, fmt.Errorf("no in-place upgrade since %v ended within %v (last: %+v)", since.Format(time.StampMilli), d, u)
	}
	return u, nil
}

// Pid is the master's pid.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Lines are the lines of the master's (and its group's) stdout other than
// the ready line, as they come (dropped when nobody reads and 1000 are
// waiting); closed once the master was reaped.
func (p *Process) Lines() <-chan string { return p.lines }

// Dead is closed once the master exited and was reaped.
func (p *Process) Dead() <-chan struct{} { return p.dead }

// WaitExit waits up to d for the master to exit and reports whether it did.
func (p *Process) WaitExit(d time.Duration) bool {
	select {
	case <-p.dead:
		return true
	case <-time.After(d):
		return false
	}
}

// ExitCode is the master's exit status, once Dead is closed.
func (p *Process) ExitCode() int { return p.Cmd.ProcessState.ExitCode() }

// Signal sends sig to the master alone.
func (p *Process) Signal(sig syscall.Signal) { syscall.Kill(p.Pid(), sig) }

// Kill kills the master's whole process group (master, workers, auxiliary
// processes, stopped ones included) with SIGKILL and waits, up to 30 s, for
// the master to be reaped.
func (p *Process) Kill() {
	syscall.Kill(-p.Pid(), syscall.SIGKILL)
	select {
	case <-p.dead:
	case <-time.After(30 * time.Second):
		p.tb.Errorf("the master %d was not reaped within 30 s of SIGKILL", p.Pid())
	}
}

// Control GETs path from the master's control server and decodes its JSON
// answer into into (unless nil); a status other than 200 is an error
// carrying the answer.
func (p *Process) Control(path string, into any) error {
	resp, err := p.Client.Get("http://" + p.Ctl + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if into != nil {
		return json.NewDecoder(resp.Body).Decode(into)
	}
	return nil
}

// Workers is the master's Workers, through the control server; an error
// fails the test.
func (p *Process) Workers() []cluster2.WorkerInfo {
	p.tb.Helper()
	var ws []cluster2.WorkerInfo
	if err := p.Control("/workers", &ws); err != nil {
		p.tb.Fatalf("workers: %v", err)
	}
	return ws
}

// Active returns the pids of the active workers, or the control server's
// error.
func (p *Process) Active() ([]int, error) {
	var ws []cluster2.WorkerInfo
	if err := p.Control("/workers", &ws); err != nil {
		return nil, err
	}
	var pids []int
	for _, w := range ws {
		if w.State.String() == "active" {
			pids = append(pids, w.Pid)
		}
	}
	return pids, nil
}

// ActivePids returns the pids of the active workers as a set; an error
// fails the test.
func (p *Process) ActivePids() map[int]bool {
	p.tb.Helper()
	out := map[int]bool{}
	for _, w := range p.Workers() {
		if w.State.String() == "active" {
			out[w.Pid] = true
		}
	}
	return out
}

// AnyActive returns the pid of one active worker; none fails the test.
func (p *Process) AnyActive() int {
	p.tb.Helper()
	for pid := range p.ActivePids() {
		return pid
	}
	p.tb.Fatalf("no active worker: %+v", p.Workers())
	return 0
}

// Healthy waits, up to d, until n workers are active.
func (p *Process) Healthy(n int, d time.Duration) bool {
	return xtesting.Eventually(d, func() bool {
		pids, err := p.Active()
		if err == nil && len(pids) == n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
}

// Metrics GETs the monitor's /metrics.
func (p *Process) Metrics() (string, error) { return p.body("http://" + p.Mon + "/metrics") }

// body GETs url with the Process's client and returns the body, whatever
// the status.
func (p *Process) body(url string) (string, error) {
	resp, err := p.Client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// WaitMetric waits up to d until the samples of the monitor's metric name
// whose pid label is one of pids sum to at least min; it returns whether
// they did, and the last sum and samples of name seen (for the test's
// error).
func (p *Process) WaitMetric(name string, pids map[int]bool, min float64, d time.Duration) (bool, float64, string) {
	var sum float64
	var lines []string
	ok := xtesting.Eventually(d, func() bool {
		body, _ := p.Metrics()
		sum, lines = sumMetric(body, name, pids), nil
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, name+"{") {
				lines = append(lines, l)
			}
		}
		if sum >= min {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	return ok, sum, strings.Join(lines, "\n")
}

// sumMetric sums the samples of the metric name in body (Prometheus' text
// format) whose pid label is one of pids.
func sumMetric(body, name string, pids map[int]bool) float64 {
	sum := 0.0
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		for pid := range pids {
			if strings.Contains(l, `pid="`+strconv.Itoa(pid)+`"`) {
				f := strings.Fields(l)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += v
			}
		}
	}
	return sum
}

// MonitorAddr asks the control server for the monitor's address ("" when
// the monitor is off).
func (p *Process) MonitorAddr() (string, error) { return p.body("http://" + p.Ctl + "/monitor") }

// ManagerPid finds the cache-manager process: a live child of the master
// with the cache manager's role in its environment; 0 when there is none.
func (p *Process) ManagerPid() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(p.Pid()) || f[0] == "Z" {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if bytes.Contains(env, []byte(proc.EnvRole+"="+proc.RoleCacheManager.String()+"\x00")) {
			return pid
		}
	}
	return 0
}

// Alive reports whether pid is a live process (not a zombie).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// Result is what a child run to its end (Run) printed and how it exited.
type Result struct {
	Code           int // exit status (-1: killed by a signal)
	Stdout, Stderr string
}

// Run runs the child named child with env to its end, up to timeout (which
// fails the test), and returns its output and exit status. For a cluster
// that must refuse to start.
func Run(tb testing.TB, timeout time.Duration, child string, env ...string) Result {
	tb.Helper()
	cmd := xtesting.Command(tb, child, nil, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	xtesting.Start(tb, cmd)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		tb.Fatalf("the child %s still ran after %v; output %q %q", child, timeout, stdout.String(), stderr.String())
	}
	return Result{Code: cmd.ProcessState.ExitCode(), Stdout: stdout.String(), Stderr: stderr.String()}
}
