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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// buildDemo builds this command with main.version set to version, at path;
// it skips the test where no child process may run or no go command is.
func buildDemo(t *testing.T, version, path string) {
	t.Helper()
	if os.Getenv(xtesting.EnvNoChildren) != "" {
		t.Skipf("%s is set: no child processes", xtesting.EnvNoChildren)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the demo with")
	}
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", path, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", version, err, out)
	}
}

// runBuilt starts the demo binary at path (2 workers, run directory
// rundir) in its own process group, killed when the test ends, and returns
// its state once it serves, and the lines of the group's stderr (the log;
// lines are dropped when the channel is full). The log is kept for a failed
// test.
func runBuilt(t *testing.T, path, rundir string) (state, <-chan string) {
	t.Helper()
	cmd := exec.Command(path, "-addr", "127.0.0.1:0", "-monitor", "127.0.0.1:0", "-workers", "2", "-rundir", rundir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

	var old []int
	if !xtesting.Eventually(30*time.Second, func() bool { old = activeWorkers(t, st.Monitor); return len(old) == 2 }) {
		t.Fatal("the 2 workers are not active within 30 s")
	}
	for range 4 {
		if _, v, err := helloOf(st.Addr); err != nil || v != "v1" {
			t.Fatalf("before the deploy GET / = %q, %v; want v1", v, err)
		}
	}

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
}

// A broken file renamed over the path (a script that exits 1; a file that
// is not executable) and a SIGHUP: no successor starts, every replacement
// fails ("replacement failed" in the log, once per worker), and the same
// worker pids keep serving the old build, with no failed request. The new
// binary is not checked before the first successor yet (issue 15's check
// mode is still to do): the failure shows per successor, after its retries.
func TestDemoReloadOntoABrokenBinaryKeepsTheWorkers(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	buildDemo(t, "v1", bin)
	st, logLines := runBuilt(t, bin, t.TempDir())
	var old []int
	if !xtesting.Eventually(30*time.Second, func() bool { old = activeWorkers(t, st.Monitor); return len(old) == 2 }) {
		t.Fatal("the 2 workers are not active within 30 s")
	}
	for _, broken := range []struct {
		name, text string
		mode       os.FileMode
	}{
		{"a script that exits 1", "#!/bin/sh\nexit 1\n", 0o755},
		{"a file that is not executable", "not a program\n", 0o644},
	} {
		stopLoad := startLoad(st.Addr)
		if err := os.WriteFile(bin+".new", []byte(broken.text), broken.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(st.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		failures := 0
		deadline := time.After(60 * time.Second)
		for failures < len(old) {
			select {
			case l := <-logLines:
				if strings.Contains(l, "replacement failed") {
					failures++
				}
			case <-deadline:
				t.Fatalf("%s: %d replacement failures logged within 60 s; want %d", broken.name, failures, len(old))
			}
		}
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
}
