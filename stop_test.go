package cluster2_test

import (
	"syscall"
	"testing"
	"time"
)

// TestStopKillsStoppedWorkerAfterGrace: a graceful stop with a SIGSTOPped
// worker (it cannot drain: no heartbeat, no acknowledgement) kills that
// worker after the short unresponsive grace (2 × HeartbeatInterval, at least
// 1 s), not at StopTimeout (60 s here); the other worker still drains its
// in-flight request to the end.
func TestStopKillsStoppedWorkerAfterGrace(t *testing.T) {
	tc := startCluster(t, envWorkers+"=2", envStopTO+"=60s", envReplaceTO+"=60s")
	pids := tc.activePids()
	var stopped int
	for pid := range pids {
		stopped = pid
		break
	}
	// A request in flight on the other worker when the stop begins (fresh
	// connections: the stopped worker may take some; retry until one is
	// served by the other).
	inflight := make(chan error, 1)
	go func() {
		for range 50 {
			r, err := tc.get("/slow?ms=1500")
			if err != nil || r.Pid != stopped {
				inflight <- err
				return
			}
		}
		inflight <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(stopped, syscall.SIGSTOP)
	defer syscall.Kill(stopped, syscall.SIGCONT)
	start := time.Now()
	tc.cmd.Process.Signal(syscall.SIGTERM)
	if !tc.waitExit(15 * time.Second) {
		t.Fatalf("master still running %v after SIGTERM with a SIGSTOPped worker (StopTimeout 60 s)",
			time.Since(start).Round(time.Millisecond))
	}
	t.Logf("stop took %v with worker %d SIGSTOPped", time.Since(start).Round(time.Millisecond), stopped)
	if err := <-inflight; err != nil {
		t.Errorf("request in flight on the running worker: %v; want served", err)
	}
	if tc.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("master exit: %v; want 0", tc.cmd.ProcessState)
	}
	for pid := range pids {
		if alive(pid) {
			t.Errorf("worker %d still alive after the master stopped", pid)
		}
	}
}
