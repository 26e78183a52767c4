package cluster2_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
)

// TestStopKillsStoppedWorkerAfterGrace: a graceful stop with a SIGSTOPped
// worker (it cannot drain: no heartbeat, no acknowledgement) kills that
// worker after the short unresponsive grace (2 × HeartbeatInterval, at least
// 1 s), not at StopTimeout (300 s here); the other worker still drains its
// in-flight request to the end. The bound the test holds the stop to is half
// the StopTimeout, not the grace: a loaded machine may take many seconds
// (16 s seen under a full -race run) and still be right; waiting for the
// StopTimeout is what is wrong.
func TestStopKillsStoppedWorkerAfterGrace(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvStopTO+"=300s", clustertest.EnvReplaceTO+"=60s")
	pids := tc.ActivePids()
	// A keep-alive connection: whoever serves it is the running worker, the
	// other one is stopped.
	c, r := tc.rawConn()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var first clustertest.Reply
	json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	stopped := 0
	for pid := range pids {
		if pid != first.Pid {
			stopped = pid
		}
	}
	if stopped == 0 || !pids[first.Pid] {
		t.Fatalf("served by %d; want one of the workers %v", first.Pid, pids)
	}
	// A request in flight on the running worker when the stop begins.
	fmt.Fprintf(c, "GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(stopped, syscall.SIGSTOP)
	defer syscall.Kill(stopped, syscall.SIGCONT)
	start := time.Now()
	tc.Cmd.Process.Signal(syscall.SIGTERM)
	c.SetReadDeadline(time.Now().Add(120 * time.Second))
	if resp, err := http.ReadResponse(r, nil); err != nil {
		t.Errorf("request in flight on the running worker %d: %v; want served", first.Pid, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.Close() // as the drain's "Connection: close" asks
		if resp.StatusCode != 200 {
			t.Errorf("request in flight on the running worker: status %d; want 200", resp.StatusCode)
		}
	}
	if !tc.WaitExit(150 * time.Second) {
		t.Fatalf("master still running %v after SIGTERM with a SIGSTOPped worker (StopTimeout 300 s)",
			time.Since(start).Round(time.Millisecond))
	}
	t.Logf("stop took %v with worker %d SIGSTOPped", time.Since(start).Round(time.Millisecond), stopped)
	if tc.Cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("master exit: %v; want 0", tc.Cmd.ProcessState)
	}
	for pid := range pids {
		if clustertest.Alive(pid) {
			t.Errorf("worker %d still alive after the master stopped", pid)
		}
	}
}
