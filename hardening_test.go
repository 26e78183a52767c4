package cluster2_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// TestFailedRespawnIsRetried: with the master out of descriptors, the respawn
// of a killed worker fails (fork/exec: too many open files); the master
// keeps the slot, says so (Respawning, "respawn-failure" events) and fills
// it once descriptors are free again.
func TestFailedRespawnIsRetried(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvNoFile+"=256")
	victim := tc.AnyActive()
	// One descriptor left: enough for the control server's connection
	// (kept alive by the test's client), not for a spawn (/dev/null for
	// stdin, the exec status pipe, the child's pidfd), even with the dead
	// worker's pidfd back.
	if err := tc.Control("/exhaust?leave=1", nil); err != nil {
		t.Fatal(err)
	}
	freed := false
	defer func() {
		if !freed {
			tc.Control("/free", nil)
		}
	}()
	syscall.Kill(victim, syscall.SIGKILL)
	var pending []cluster2.Respawn
	if !xtesting.Eventually(wait, func() bool {
		pending = nil
		return tc.Control("/respawning", &pending) == nil && len(pending) == 1 && pending[0].Attempts >= 2
	}) {
		t.Fatalf("no respawn retried while out of descriptors: respawning %+v, events %v", pending, tc.events())
	}
	if !strings.Contains(pending[0].Err, "too many open files") {
		t.Errorf("respawning %+v; want the spawn's EMFILE", pending)
	}
	if !hasSuffix(tc.events(), "respawn-failure") {
		t.Errorf("events %v; want respawn-failure", tc.events())
	}
	if err := tc.Control("/free", nil); err != nil {
		t.Fatal(err)
	}
	freed = true
	if !xtesting.Eventually(wait, func() bool {
		now := tc.ActivePids()
		return len(now) == 2 && !now[victim]
	}) {
		t.Fatalf("slot not refilled after descriptors were freed: workers %+v, respawning %+v", tc.Workers(), pending)
	}
	if err := tc.Control("/respawning", &pending); err != nil || len(pending) != 0 {
		t.Errorf("respawning %+v (%v) once the slot is filled; want none", pending, err)
	}
}

// closedWithin reports whether the server closed c (EOF or reset on read)
// within d, skipping what it sends first (a 408 or 400 response).
func closedWithin(c net.Conn, r *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, r)
	if err == nil {
		return true // EOF
	}
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// TestIdleAndSlowClientsAreCut: idle keep-alive connections, slow headers,
// slow bodies and oversized headers are cut by the workers' limits (short
// ones here; production defaults in ServerConfig).
func TestIdleAndSlowClientsAreCut(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvIdle+"=500ms", clustertest.EnvHeaderTO+"=500ms", clustertest.EnvBodyTO+"=500ms",
		clustertest.EnvMaxHeader+"=4096")
	t.Run("idle-keep-alive", func(t *testing.T) {
		c, r := tc.rawConn()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			t.Fatalf("response asks to close; want keep-alive")
		}
		start := time.Now()
		if !closedWithin(c, r, 10*time.Second) {
			t.Fatalf("idle keep-alive connection still open after 10 s (IdleTimeout 500ms)")
		}
		t.Logf("idle connection closed after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("slow-header", func(t *testing.T) {
		c, r := tc.rawConn()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the end of the header
		if !closedWithin(c, r, 10*time.Second) {
			t.Fatalf("connection with an unfinished header still open after 10 s (ReadHeaderTimeout 500ms)")
		}
	})
	t.Run("slow-body", func(t *testing.T) {
		c, r := tc.rawConn()
		fmt.Fprintf(c, "PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one byte every 200 ms: 20 s for the body
			for range 100 {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatalf("slow body served: status 200; want it cut")
			}
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow body (1 byte / 200 ms) still being read after 10 s (BodyReadTimeout 500ms)")
		}
	})
	t.Run("oversized-header", func(t *testing.T) {
		c, r := tc.rawConn()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("16 KiB header: status %d; want 431 (MaxHeaderBytes 4096)", resp.StatusCode)
		}
	})
	// A body read in time is still served, and a handler that runs longer
	// than the body deadline after reading its body is not cut.
	t.Run("body-in-time", func(t *testing.T) {
		resp, err := http.DefaultClient.Do(mustRequest(t, "PUT", "http://"+tc.Addr+"/put", strings.NewReader("hello")))
		if err != nil {
			t.Fatal(err)
		}
		var rep clustertest.Reply
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode != 200 || rep.Bytes != 5 {
			t.Fatalf("PUT of 5 bytes: status %d, %d bytes read", resp.StatusCode, rep.Bytes)
		}
	})
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestStoppedWorkerIsKilledAfterGrace: a SIGSTOPped worker is replaced by the
// nanny, and then killed after a short grace (it cannot drain: no
// heartbeat, no acknowledgement), not after 2 × ReplaceTimeout (2 min here).
func TestStoppedWorkerIsKilledAfterGrace(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvNanny+"=1s", clustertest.EnvReplaceTO+"=60s")
	p := tc.AnyActive()
	// A keep-alive connection to it, open while it is stopped.
	c, r := tc.rawConn()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(r, nil); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	start := time.Now()
	syscall.Kill(p, syscall.SIGSTOP)
	died := "worker-" + strconv.Itoa(p) + "-died"
	if !xtesting.Eventually(wait, func() bool { return slices.Contains(tc.events(), died) }) {
		syscall.Kill(p, syscall.SIGCONT)
		t.Fatalf("stopped worker %d not killed within %v (ReplaceTimeout 60 s): events %v", p, wait, tc.events())
	}
	t.Logf("stopped worker gone after %v", time.Since(start).Round(time.Millisecond))
	ev := strings.Join(tc.events(), " ")
	for _, want := range []string{"-old", "-unresponsive", "-sigkill"} {
		if !strings.Contains(ev, "worker-"+strconv.Itoa(p)+want) {
			t.Errorf("events %s; want worker-%d%s", ev, p, want)
		}
	}
	if !closedWithin(c, r, 5*time.Second) {
		t.Errorf("the stopped worker's keep-alive connection still open after it was killed")
	}
	if seen := tc.SeenPids(5); seen[p] != 0 || len(seen) != 1 {
		t.Errorf("served by %v; want the successor only", seen)
	}
}

// TestRollingRestartsResetNoKeepAlivePUT: keep-alive PUTs (which no client
// replays) from 8 clients through back-to-back rolling restarts: none fails.
// The drain answers with "Connection: close" and closes only connections
// idle for a grace; turning keep-alives off (the old drain) closed idle
// connections under requests already sent. CLUSTER2_SOAK=1 runs it longer.
func TestRollingRestartsResetNoKeepAlivePUT(t *testing.T) {
	restarts, dur := 0, 10*time.Second
	if os.Getenv("CLUSTER2_SOAK") != "" {
		dur = 60 * time.Second
	} else if testing.Short() {
		dur = 4 * time.Second
	}
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	stop := make(chan struct{})
	n, wg := tc.PutLoad(8, stop)
	for end := time.Now().Add(dur); time.Now().Before(end); restarts++ {
		if err := tc.Control("/rolling", nil); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("rolling restart %d: %v", restarts, err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d rolling restarts (%d replacements) in %v: %d keep-alive PUTs, %d failed",
		restarts, 2*restarts, dur, n.Done.Load(), n.Failed.Load())
	if n.Failed.Load() != 0 {
		t.Errorf("%d failed keep-alive PUTs across %d rolling restarts; want 0; first: %s",
			n.Failed.Load(), restarts, strings.Join(n.Errs(), " | "))
	}
	if n.Done.Load() == 0 {
		t.Errorf("no PUT served")
	}
}

// TestPausesResetNoKeepAlivePUT: keep-alive PUTs from 8 clients while one of
// two workers is paused and resumed back to back: none fails. A pause stops
// accepting, answers with "Connection: close" and closes only connections
// idle for a grace, as the drain does; turning keep-alives off (the old
// pause) closed idle connections at once, under requests already sent.
func TestPausesResetNoKeepAlivePUT(t *testing.T) {
	dur := 4 * time.Second
	if os.Getenv("CLUSTER2_SOAK") != "" {
		dur = 60 * time.Second
	}
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	pid := tc.Workers()[0].Pid
	stop := make(chan struct{})
	n, wg := tc.PutLoad(8, stop)
	pauses := 0
	for end := time.Now().Add(dur); time.Now().Before(end); pauses++ {
		for _, op := range []string{"/pause", "/resume"} {
			if err := tc.Control(op+"?pid="+strconv.Itoa(pid), nil); err != nil {
				close(stop)
				wg.Wait()
				t.Fatalf("%s %d: %v", op, pauses, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d pauses and resumes in %v: %d keep-alive PUTs, %d failed", pauses, dur, n.Done.Load(), n.Failed.Load())
	if n.Failed.Load() != 0 {
		t.Errorf("%d failed keep-alive PUTs across %d pauses; want 0; first: %s",
			n.Failed.Load(), pauses, strings.Join(n.Errs(), " | "))
	}
	if n.Done.Load() == 0 {
		t.Errorf("no PUT served")
	}
}

// TestCurrentRoleInWorker: CurrentRole says "worker" in a worker before and
// after Listen, and "master" in this plain process.
func TestCurrentRoleInWorker(t *testing.T) {
	if r := cluster2.CurrentRole(); r != cluster2.Master {
		t.Fatalf("CurrentRole in the test process = %v; want master", r)
	}
	tc := startCluster(t, clustertest.EnvWorkers+"=1")
	r, err := tc.Get("/")
	if err != nil {
		t.Fatal(err)
	}
	if r.Role != "worker" || r.RoleAtStart != "worker" {
		t.Fatalf("CurrentRole in a worker: %q after Listen, %q before; want worker both times", r.Role, r.RoleAtStart)
	}
}

// TestStartEventsInOrder: every worker's start events arrive as the
// documented sequence forked, warming, warmup, listening, however fast its
// warm-up (the master's watcher sees only a worker's latest state).
func TestStartEventsInOrder(t *testing.T) {
	// Without a WarmUp a worker passes warming and warmed in microseconds.
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvNoWarmUp+"=1")
	for range 3 {
		if err := tc.Control("/rolling", nil); err != nil {
			t.Fatal(err)
		}
	}
	start := []string{"forked", "warming", "warmup", "listening"}
	byPid := map[string][]string{}
	for _, e := range tc.events() {
		rest, ok := strings.CutPrefix(e, "worker-")
		if !ok {
			continue
		}
		pid, what, _ := strings.Cut(rest, "-")
		if slices.Contains(start, what) {
			byPid[pid] = append(byPid[pid], what)
		}
	}
	if len(byPid) != 8 {
		t.Fatalf("start events of %d workers; want 8 (2 + 3 × 2): %v", len(byPid), tc.events())
	}
	for pid, got := range byPid {
		if !slices.Equal(got, start) {
			t.Errorf("worker %s start events %v; want %v", pid, got, start)
		}
	}
}

// TestStartFailureCarriesReason: Listen's error names why the initial worker
// failed, in the worker's own words: WarmUp's error, or ConfigureApp's.
func TestStartFailureCarriesReason(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{clustertest.EnvWarmFail, "warm-up told to fail"},
		{clustertest.EnvConfFail, "configure told to fail"},
	} {
		t.Run(tt.env, func(t *testing.T) {
			flag := filepath.Join(t.TempDir(), "fail")
			os.WriteFile(flag, nil, 0o644)
			out := clustertest.Run(t, wait, "cluster", clustertest.EnvWorkers+"=1", tt.env+"="+flag, clustertest.EnvRetries+"=-1").Stdout
			var line string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "the cluster failed to start") { // the master's; a worker prints its own
					line = l
				}
			}
			if line == "" || !strings.Contains(line, tt.want) {
				t.Fatalf("master's Listen error %q; want it to carry %q (output %q)", line, tt.want, out)
			}
		})
	}
}

// TestAgentAddrReadBack: the agent-check responder's address (port 0 asked)
// can be read back, and answers there.
func TestAgentAddrReadBack(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvAgent+"=127.0.0.1:0")
	resp, err := http.Get("http://" + tc.Ctl + "/agent")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	addr := string(b)
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("AgentAddr = %q; want the bound address", addr)
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("agent-check at %s: %v", addr, err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if strings.TrimSpace(line) == "" {
		t.Fatalf("agent-check at %s answered nothing", addr)
	}
}
