package cluster2_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestHeartbeatsReachTheMaster(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvHeartbeat+"=100ms")
	for range 50 {
		if _, err := tc.Get("/"); err != nil {
			t.Fatal(err)
		}
	}
	ok := xtesting.Eventually(wait, func() bool {
		var total uint64
		for _, w := range tc.Workers() {
			h := w.Heartbeat
			if h.Pid != w.Pid || h.Slot != w.Slot || h.RSS == 0 || h.Goroutines == 0 || h.Uptime <= 0 || h.Cycle <= 0 {
				return false
			}
			total += h.TotalConns
		}
		return total >= 50
	})
	if !ok {
		t.Fatalf("heartbeats incomplete: %+v", tc.Workers())
	}
}

func TestMemoryLimitReplacesWorker(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvMemLimit+"=1", clustertest.EnvHeartbeat+"=100ms")
	p := tc.AnyActive()
	ok := xtesting.Eventually(wait, func() bool { return !clustertest.Alive(p) })
	if !ok {
		t.Fatalf("worker %d over a 1-byte memory limit was not replaced", p)
	}
	if _, err := tc.Get("/"); err != nil {
		t.Fatalf("cluster not serving after a memory-limit replacement: %v", err)
	}
}

// TestNannyReplacesSilentWorker stops a worker (SIGSTOP): it sends no more
// heartbeats, so the nanny replaces it; the stopped process cannot drain, so
// the death queue escalates to SIGKILL.
func TestNannyReplacesSilentWorker(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvHeartbeat+"=100ms", clustertest.EnvNanny+"=500ms", clustertest.EnvReplaceTO+"=3s")
	p := tc.AnyActive()
	syscall.Kill(p, syscall.SIGSTOP)
	ok := xtesting.Eventually(wait, func() bool { return !clustertest.Alive(p) && len(tc.ActivePids()) == 2 })
	if !ok {
		t.Fatalf("silent worker %d not replaced: %+v", p, tc.Workers())
	}
	ev := strings.Join(tc.events(), " ")
	if !strings.Contains(ev, "worker-"+strconv.Itoa(p)+"-old") {
		t.Errorf("events %s; want worker-%d-old (replaced through the death queue)", ev, p)
	}
}
