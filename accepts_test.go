package cluster2_test

// Per-worker accepts and requests (issue 18, item 3): the worker counts them
// in its control block, the master reads them live (Workers, /metrics, the
// dashboard's overview).

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// metricCounts reads every worker's accepts and requests from /metrics.
func (c *monCluster) metricCounts() map[int]clustertest.WorkerCounts {
	c.t.Helper()
	m, err := clustertest.MetricCounts(c.mon)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// TestAcceptsAndRequestsCounted: every connection a worker accepts and every
// request it serves is in /metrics at once (no heartbeat to wait for): the
// per-pid differences are what the clients saw each pid serve, on new
// connections (one accept per request) and on one kept-alive connection
// (one accept, many requests); Workers says the same.
func TestAcceptsAndRequestsCounted(t *testing.T) {
	c := startMonitored(t, 2, clustertest.EnvHeartbeat+"=30s") // no heartbeat helps
	c.waitReady()
	before := c.metricCounts()
	if len(before) != 2 {
		t.Fatalf("/metrics counts %v; want 2 workers", before)
	}
	served := c.SeenPids(200) // a new connection each
	after := c.metricCounts()
	var sum uint64
	for pid, n := range served {
		d := clustertest.WorkerCounts{Accepts: after[pid].Accepts - before[pid].Accepts, Requests: after[pid].Requests - before[pid].Requests}
		if d.Accepts != uint64(n) || d.Requests != uint64(n) {
			t.Errorf("pid %d served %d requests on new connections; /metrics counted %d accepts, %d requests", pid, n, d.Accepts, d.Requests)
		}
		sum += d.Requests
	}
	if sum != 200 {
		t.Errorf("/metrics counted %d requests; the clients had 200 served (by %v)", sum, served)
	}

	before = after
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	pid := 0
	for range 50 {
		r, err := clustertest.Get(hc, c.app+"/")
		if err != nil {
			t.Fatal(err)
		}
		if pid != 0 && r.Pid != pid {
			t.Fatalf("one kept-alive connection served by pids %d and %d", pid, r.Pid)
		}
		pid = r.Pid
	}
	after = c.metricCounts()
	if d := after[pid].Requests - before[pid].Requests; after[pid].Accepts-before[pid].Accepts != 1 || d != 50 {
		t.Errorf("one kept-alive connection with 50 requests: /metrics counted %d accepts, %d requests",
			after[pid].Accepts-before[pid].Accepts, d)
	}
	for _, w := range c.Workers() {
		if w.Accepts < after[w.Pid].Accepts || w.Requests < after[w.Pid].Requests {
			t.Errorf("Workers says %d accepts, %d requests for pid %d; /metrics said %+v before", w.Accepts, w.Requests, w.Pid, after[w.Pid])
		}
	}
	var ov struct {
		Workers []struct {
			Pid           int
			AcceptsTotal  uint64 `json:"acceptsTotal"`
			RequestsTotal uint64 `json:"requestsTotal"`
		}
	}
	code, body := get(c.mon + "/debug/api/overview")
	if code != 200 || json.Unmarshal([]byte(body), &ov) != nil || len(ov.Workers) != 2 {
		t.Fatalf("overview = %d %s", code, body)
	}
	for _, w := range ov.Workers {
		if w.AcceptsTotal != after[w.Pid].Accepts || w.RequestsTotal != after[w.Pid].Requests {
			t.Errorf("the dashboard's overview says %+v; /metrics %+v", w, after[w.Pid])
		}
	}
}

// TestBalancedAcceptsThroughRollingRestarts: with the accept balance on (the
// default), new connections from 16 clients through two rolling restarts of
// four workers: 0 failed, and every worker of the end served some of them
// (a draining worker's share goes to the others; none is held back for
// good).
func TestBalancedAcceptsThroughRollingRestarts(t *testing.T) {
	c := startMonitored(t, 4)
	c.waitReady()
	stop := make(chan struct{})
	n, wg := c.Load(16, false, stop)
	for range 2 {
		before := c.ActivePids()
		c.Signal(syscall.SIGHUP)
		if !xtesting.Eventually(wait, func() bool {
			now := c.ActivePids()
			for pid := range now {
				if before[pid] {
					return false
				}
			}
			return len(now) == 4
		}) {
			close(stop)
			wg.Wait()
			t.Fatalf("the rolling restart did not replace %v: %+v", before, c.Workers())
		}
	}
	// Every worker of the end takes some of the connections (within 30 s).
	before := c.metricCounts()
	var after map[int]clustertest.WorkerCounts
	all := xtesting.Eventually(wait, func() bool {
		after = c.metricCounts()
		for pid := range c.ActivePids() {
			if after[pid].Accepts == before[pid].Accepts {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d failed through two rolling restarts of 4 workers", n.Done.Load(), n.Failed.Load())
	if n.Failed.Load() != 0 {
		t.Errorf("%d failed requests; want 0; first: %s", n.Failed.Load(), strings.Join(n.Errs(), " | "))
	}
	if !all {
		t.Errorf("under load, a worker accepted nothing for %v: %v → %v", wait, before, after)
	}
}
