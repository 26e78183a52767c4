package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// buildDemo builds this command with main.version set to version, at path;
// it skips the test where no child process may run or no go command is.
func buildDemo(t *testing.T, version, path string) {
	t.Helper()
	buildDemoWith(t, path, nil, "-X main.version="+version)
}

// buildDemoWith builds this command at path with env added to go build's
// environment, and ldflags; it skips the test as buildDemo does.
func buildDemoWith(t *testing.T, path string, env []string, ldflags string) {
	t.Helper()
	if os.Getenv(xtesting.EnvNoChildren) != "" {
		t.Skipf("%s is set: no child processes", xtesting.EnvNoChildren)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the demo with")
	}
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", path, ".")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s %s: %v\n%s", env, ldflags, err, out)
	}
}

// runBuilt starts the demo binary at path (2 workers, run directory
// rundir; opts change the command) in its own process group, killed when the test ends, and returns
// its state once it serves, and the lines of the group's stderr (the log;
// lines are dropped when the channel is full). The log is kept for a failed
// test.
func runBuilt(t *testing.T, path, rundir string, opts ...func(*exec.Cmd)) (state, <-chan string) {
	t.Helper()
	cmd := exec.Command(path, "-addr", "127.0.0.1:0", "-monitor", "127.0.0.1:0", "-workers", "2", "-rundir", rundir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	for _, o := range opts {
		o(cmd) // more environment, descriptors, a launcher
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logLines := make(chan string, 1000)
	var mu sync.Mutex
	var kept []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			kept = append(kept, sc.Text())
			mu.Unlock()
			select {
			case logLines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("the demo's log:\n%s", strings.Join(kept, "\n"))
			mu.Unlock()
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	serving := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving") {
				serving <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-serving:
		t.Log(l)
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not say it serves within 60 s")
	}
	b, err := os.ReadFile(filepath.Join(rundir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st, logLines
}

// activeWorkers returns the pids of the monitor's workers when they are all
// active, nil otherwise.
func activeWorkers(t *testing.T, monitor string) []int {
	t.Helper()
	resp, err := http.Get("http://" + monitor + "/debug/api/workers")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var ws []struct {
		Pid   int    `json:"pid"`
		State string `json:"state"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
		return nil
	}
	var pids []int
	for _, w := range ws {
		if w.State != "active" {
			return nil
		}
		pids = append(pids, w.Pid)
	}
	slices.Sort(pids)
	return pids
}

// helloOf returns the pid and version of a GET / on a new connection.
func helloOf(addr string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var v struct {
		Pid     int    `json:"pid"`
		Version string `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		return 0, "", fmt.Errorf("GET /: status %d, %v", resp.StatusCode, err)
	}
	return v.Pid, v.Version, nil
}

// startLoad sends GET / to addr through new connections and kept-alive
// ones until the returned func is called, which fails the test if any
// request failed.
func startLoad(addr string) func(t *testing.T) {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var load sync.WaitGroup
	count := func(err error) {
		if err == nil {
			ok.Add(1)
			return
		}
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	kept := &http.Client{Timeout: 10 * time.Second}
	for _, get := range []func() error{
		func() error { _, _, err := helloOf(addr); return err }, // new connections
		func() error { // kept-alive (the client retries a request whose idle connection was closed)
			resp, err := kept.Get("http://" + addr + "/")
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		},
	} {
		load.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				count(get())
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return func(t *testing.T) {
		t.Helper()
		close(stop)
		load.Wait()
		if n := failed.Load(); n != 0 {
			t.Errorf("%d of %d requests failed; first: %v", n, n+ok.Load(), firstErr.Load())
		}
		t.Logf("%d requests under the load", ok.Load())
	}
}

// The usual deploy: a new build renamed over the running binary's path,
// then reload (SIGHUP) from the new binary. Every new worker runs the new
// file (its /proc/<pid>/exe is the path, not a deleted file; it serves the
// new version) and no request fails under a small load, with new
// connections and kept-alive ones.
func TestDemoReloadRunsTheBinaryOnDisk(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	buildDemo(t, "v1", bin)
	buildDemo(t, "v2", bin+".new")
	rundir := t.TempDir()
	st, _ := runBuilt(t, bin, rundir)

	old := twoActive(t, st)
	for range 4 {
		if _, v, err := helloOf(st.Addr); err != nil || v != "v1" {
			t.Fatalf("before the deploy GET / = %q, %v; want v1", v, err)
		}
	}
	wantBuilds(t, st, old, "v1")

	stopLoad := startLoad(st.Addr) // a small load, through the whole deploy

	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	// The new binary's reload: it finds the master through demo.json.
	if out, err := exec.Command(bin, "-rundir", rundir, "reload").CombinedOutput(); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	var now []int
	replaced := xtesting.Eventually(60*time.Second, func() bool {
		now = activeWorkers(t, st.Monitor)
		return len(now) == 2 && !slices.ContainsFunc(now, func(p int) bool { return slices.Contains(old, p) })
	})
	stopLoad(t)
	if !replaced {
		t.Fatalf("workers %v after the reload; want 2 new ones (old: %v)", now, old)
	}
	for _, pid := range now {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || exe != bin {
			t.Errorf("worker %d runs %q (%v); want the new file at %s", pid, exe, err, bin)
		}
	}
	for range 6 {
		pid, v, err := helloOf(st.Addr)
		if err != nil || v != "v2" || !slices.Contains(now, pid) {
			t.Errorf("after the deploy GET / = pid %d %q, %v; want v2 from one of %v", pid, v, err, now)
		}
	}
	wantBuilds(t, st, now, "v2")
}

// wantBuilds checks the monitor's /status: each of workers says version
// (from its control block), and the master v1 (it still runs the binary it
// started from).
func wantBuilds(t *testing.T, st state, workers []int, version string) {
	t.Helper()
	resp, err := http.Get("http://" + st.Monitor + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		Build map[string]struct {
			Version string `json:"version"`
		} `json:"build"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	for _, pid := range workers {
		if v := s.Build[strconv.Itoa(pid)].Version; v != version {
			t.Errorf("/status: worker %d's build is %q; want %s (%+v)", pid, v, version, s.Build)
		}
	}
	if v := s.Build[strconv.Itoa(st.Pid)].Version; v != "v1" {
		t.Errorf("/status: the master's build is %q; want v1 (%+v)", v, s.Build)
	}
}

// A broken file renamed over the path, then a SIGHUP or a reload: the
// master checks the binary on disk before the first successor, the check
// fails, the whole restart is refused with the reason (in the log and in
// reload's answer), nothing is replaced: the same worker pids keep serving
// v1, no request fails. The broken files: none (removed), a file that is
// not executable, a script that exits 1, a build for arm64 (ENOEXEC, or
// another architecture under binfmt_misc's qemu), a build that panics in
// init, a build that speaks another arena layout. Then a good v2 is
// renamed over it and a reload replaces every worker.
func TestDemoReloadOntoABrokenBinaryKeepsTheWorkers(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	ctl := filepath.Join(dir, "ctl", "demo") // a v1 kept aside to run reload with (the same name: see verifyMaster)
	buildDemo(t, "v1", bin)
	buildDemo(t, "v1", ctl)
	buildDemo(t, "v2", filepath.Join(dir, "v2"))
	buildDemoWith(t, filepath.Join(dir, "arm64"), []string{"GOARCH=arm64"}, "-X main.version=arm64")
	buildDemoWith(t, filepath.Join(dir, "panics"), nil, "-X main.version=panics -X main.panicInInit=1")
	buildDemoWith(t, filepath.Join(dir, "bumped"), nil, "-X main.version=bumped "+layoutBump)
	rundir := t.TempDir()
	st, logLines := runBuilt(t, bin, rundir)
	old := twoActive(t, st)
	for i, broken := range []struct {
		name   string
		put    func() error // puts the broken file at bin
		reason string       // in the log and reload's answer
	}{
		{"a missing file", func() error { return os.Remove(bin) }, "the file is missing"},
		{"a file that is not executable", writeFile(bin, "not a program\n", 0o644), "the file is not executable"},
		{"a script that exits 1", writeFile(bin, "#!/bin/sh\necho broken script >&2\nexit 1\n", 0o755), "exit status 1; its stderr ends: broken script"},
		{"an arm64 build", renameFrom(filepath.Join(dir, "arm64"), bin), "another architecture"},
		{"a build that panics in init", renameFrom(filepath.Join(dir, "panics"), bin), "panic: cluster2-demo: built to panic in init"},
		{"a build of another layout", renameFrom(filepath.Join(dir, "bumped"), bin), "the arena layout is version"},
	} {
		stopLoad := startLoad(st.Addr)
		if err := broken.put(); err != nil {
			t.Fatal(err)
		}
		var answer string
		if i%2 == 0 { // SIGHUP: the reason is in the log only
			if err := syscall.Kill(st.Pid, syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		} else { // reload: the answer says it too
			out, err := exec.Command(ctl, "-rundir", rundir, "reload").CombinedOutput()
			if answer = string(out); err == nil || !strings.Contains(answer, "failed its check") || !strings.Contains(answer, broken.reason) {
				t.Errorf("%s: reload = %v, %q; want exit 1 naming the check's failure and %q", broken.name, err, answer, broken.reason)
			}
		}
		waitLog(t, logLines, broken.name, "failed its check", broken.reason)
		stopLoad(t)
		if now := activeWorkers(t, st.Monitor); !slices.Equal(now, old) {
			t.Fatalf("%s: active workers %v; want the same %v", broken.name, now, old)
		}
		for range 4 {
			if pid, v, err := helloOf(st.Addr); err != nil || v != "v1" || !slices.Contains(old, pid) {
				t.Errorf("%s: GET / = pid %d %q, %v; want v1 from one of %v", broken.name, pid, v, err, old)
			}
		}
	}
	// A good build now: the reload replaces every worker with v2.
	if err := os.Rename(filepath.Join(dir, "v2"), bin); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ctl, "-rundir", rundir, "reload").CombinedOutput(); err != nil || !strings.Contains(string(out), "every worker replaced") {
		t.Fatalf("reload onto v2: %v, %q", err, out)
	}
	now := activeWorkers(t, st.Monitor)
	if len(now) != 2 || slices.ContainsFunc(now, func(p int) bool { return slices.Contains(old, p) }) {
		t.Fatalf("workers %v after the reload onto v2; want 2 new ones (old: %v)", now, old)
	}
	if _, v, err := helloOf(st.Addr); err != nil || v != "v2" {
		t.Fatalf("after the reload GET / = %q, %v; want v2", v, err)
	}
}

// layoutBump is the linker flag of internal/build's test seam: a build
// that speaks another arena layout.
const layoutBump = "-X github.com/cluster2/cluster2/internal/build.layoutBump=1"

// waitLog waits up to 60 s for a log line holding every one of words.
func waitLog(t *testing.T, lines <-chan string, name string, words ...string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l := <-lines:
			if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(l, w) }) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no log line with %q within 60 s", name, words)
		}
	}
}

func writeFile(path, text string, mode os.FileMode) func() error {
	return func() error {
		if err := os.WriteFile(path+".new", []byte(text), mode); err != nil {
			return err
		}
		return os.Rename(path+".new", path)
	}
}

func renameFrom(from, to string) func() error { return func() error { return os.Rename(from, to) } }

// The layout rule, both ways, for reload and for the in-place upgrade: a
// build of another arena layout renamed over the running demo's path is
// refused by reload (the other way round: TestDemoReloadOntoABrokenBinary…)
// and by upgrade, whose check says which layout and what to do, and nothing
// changes: the same master (pid and start time), the same workers, no
// failed request.
func TestDemoAnotherLayoutIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name              string
		cmd               string // reload or upgrade
		running, arriving string // ldflags
	}{
		{"reload, bumped running", "reload", "-X main.version=v1 " + layoutBump, "-X main.version=v2"},
		{"upgrade, bumped arriving", "upgrade", "-X main.version=v1", "-X main.version=v2 " + layoutBump},
		{"upgrade, bumped running", "upgrade", "-X main.version=v1 " + layoutBump, "-X main.version=v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "demo")
			ctl := filepath.Join(dir, "ctl", "demo") // the arriving build, to run the command with
			buildDemoWith(t, bin, nil, tc.running)
			buildDemoWith(t, bin+".new", nil, tc.arriving)
			buildDemoWith(t, ctl, nil, tc.arriving)
			rundir := t.TempDir()
			st, logLines := runBuilt(t, bin, rundir)
			old := twoActive(t, st)
			stopLoad := startLoad(st.Addr)
			if err := os.Rename(bin+".new", bin); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(ctl, "-rundir", rundir, tc.cmd).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "the arena layout is version") || !strings.Contains(string(out), "stop and start the cluster") {
				t.Errorf("%s = %v, %q; want it refused, naming the arena's layout and what to do", tc.cmd, err, out)
			}
			waitLog(t, logLines, tc.name, "the arena layout is version")
			stopLoad(t)
			sameWorkers(t, st, old, "v1")
		})
	}
}

// twoActive waits until the demo's 2 workers are active and returns their
// pids.
func twoActive(t *testing.T, st state) []int {
	t.Helper()
	var pids []int
	if !xtesting.Eventually(30*time.Second, func() bool { pids = activeWorkers(t, st.Monitor); return len(pids) == 2 }) {
		t.Fatal("the 2 workers are not active within 30 s")
	}
	return pids
}

// sameWorkers checks that nothing changed: the same master process, the
// same active workers, serving version.
func sameWorkers(t *testing.T, st state, old []int, version string) {
	t.Helper()
	if now := activeWorkers(t, st.Monitor); !slices.Equal(now, old) {
		t.Fatalf("active workers %v; want the same %v", now, old)
	}
	if !shm.ProcessAlive(st.Pid, st.Start) {
		t.Fatalf("master %d (started %d) is gone; want the same process", st.Pid, st.Start)
	}
	if _, v, err := helloOf(st.Addr); err != nil || v != version {
		t.Fatalf("GET / = %q, %v; want the running %s", v, err, version)
	}
}
