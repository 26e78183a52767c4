package cluster2_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// testCluster is a cluster running in child processes: the test binary
// re-executed as the master, which re-executes it as workers.
type testCluster struct {
	t     *testing.T
	cmd   *exec.Cmd
	addr  string // the shared socket
	ctl   string // the master's test control server
	lines chan string
	exit  chan error
	dead  chan struct{} // closed once cmd.Wait returned
}

// startCluster starts a master with env and waits until Listen returned in
// it (every initial worker listening and warmed up).
func startCluster(t *testing.T, env ...string) *testCluster {
	t.Helper()
	cmd := xtesting.Command(t, "cluster", nil, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	xtesting.Start(t, cmd)
	tc := &testCluster{t: t, cmd: cmd, lines: make(chan string, 100), exit: make(chan error, 1), dead: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case tc.lines <- sc.Text():
			default:
			}
		}
		err := cmd.Wait()
		close(tc.dead)
		tc.exit <- err
		close(tc.lines)
	}()
	t.Cleanup(func() {
		// Whatever the test did, leave no process behind, stopped ones
		// included: the master and its workers share the master's process
		// group (xtesting.Command sets Setpgid).
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-tc.dead
	})
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-tc.lines:
			if !ok {
				t.Fatalf("master exited before READY")
			}
			if f := strings.Fields(l); len(f) == 3 && f[0] == "READY" {
				tc.addr, tc.ctl = f[1], f[2]
				return tc
			}
			if strings.HasPrefix(l, "LISTEN-ERROR") {
				t.Fatalf("master: %s", l)
			}
		case <-deadline:
			t.Fatalf("no READY from the master after 60 s")
		}
	}
}

// get fetches path from the cluster with a fresh connection.
func (tc *testCluster) get(path string) (reply, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	return getWith(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "http://"+tc.addr+path)
}

func getWith(c *http.Client, url string) (reply, error) {
	var r reply
	resp, err := c.Get(url)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return r, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// control calls the master's test control server.
func (tc *testCluster) control(path string, into any) error {
	resp, err := http.Get("http://" + tc.ctl + path)
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

func (tc *testCluster) workers() []cluster2.WorkerInfo {
	tc.t.Helper()
	var ws []cluster2.WorkerInfo
	if err := tc.control("/workers", &ws); err != nil {
		tc.t.Fatalf("workers: %v", err)
	}
	return ws
}

func (tc *testCluster) events() []string {
	tc.t.Helper()
	var ev []string
	if err := tc.control("/events", &ev); err != nil {
		tc.t.Fatalf("events: %v", err)
	}
	return ev
}

// activePids returns the pids of the active workers.
func (tc *testCluster) activePids() map[int]bool {
	out := map[int]bool{}
	for _, w := range tc.workers() {
		if w.State.String() == "active" {
			out[w.Pid] = true
		}
	}
	return out
}

// waitExit waits for the master to exit, up to d.
func (tc *testCluster) waitExit(d time.Duration) bool {
	select {
	case <-tc.exit:
		return true
	case <-time.After(d):
		return false
	}
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// seenPids sends n requests on fresh connections and returns the pids that
// served them.
func (tc *testCluster) seenPids(n int) map[int]int {
	tc.t.Helper()
	seen := map[int]int{}
	for range n {
		r, err := tc.get("/")
		if err != nil {
			tc.t.Fatalf("GET /: %v", err)
		}
		seen[r.Pid]++
	}
	return seen
}

// anyActive returns the pid of one active worker.
func (tc *testCluster) anyActive() int {
	tc.t.Helper()
	for pid := range tc.activePids() {
		return pid
	}
	tc.t.Fatalf("no active worker: %+v", tc.workers())
	return 0
}

// servedByAll reports, within the bound of the tests, whether requests on
// fresh connections reach every pid of want and no other.
func (tc *testCluster) servedByAll(want map[int]bool) bool {
	tc.t.Helper()
	return xtesting.Eventually(30*time.Second, func() bool {
		seen := tc.seenPids(20)
		for pid := range seen {
			if !want[pid] {
				tc.t.Fatalf("pid %d served a request; want one of %v", pid, want)
			}
		}
		return len(seen) == len(want)
	})
}
