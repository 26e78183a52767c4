package cluster2_test

// Per-worker accepts and requests (issue 18, item 3): the worker counts them
// in its control block, the master reads them live (Workers, /metrics, the
// dashboard's overview).

import (
	"bufio"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
)

// workerCounts is one worker's accepts and requests as /metrics shows them.
type workerCounts struct{ accepts, requests uint64 }

var countLine = regexp.MustCompile(`^cluster2_worker_(accepts|requests)_total\{pid="(\d+)",slot="\d+"\} (\d+)$`)

// metricCounts reads every worker's accepts and requests from /metrics.
func (c *monCluster) metricCounts() map[int]workerCounts {
	c.t.Helper()
	code, body := get(c.mon + "/metrics")
	if code != 200 {
		c.t.Fatalf("/metrics = %d %q", code, body)
	}
	out := map[int]workerCounts{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		m := countLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		v, _ := strconv.ParseUint(m[3], 10, 64)
		wc := out[pid]
		if m[1] == "accepts" {
			wc.accepts = v
		} else {
			wc.requests = v
		}
		out[pid] = wc
	}
	return out
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
		d := workerCounts{after[pid].accepts - before[pid].accepts, after[pid].requests - before[pid].requests}
		if d.accepts != uint64(n) || d.requests != uint64(n) {
			t.Errorf("pid %d served %d requests on new connections; /metrics counted %d accepts, %d requests", pid, n, d.accepts, d.requests)
		}
		sum += d.requests
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
	if d := after[pid].requests - before[pid].requests; after[pid].accepts-before[pid].accepts != 1 || d != 50 {
		t.Errorf("one kept-alive connection with 50 requests: /metrics counted %d accepts, %d requests",
			after[pid].accepts-before[pid].accepts, d)
	}
	for _, w := range c.Workers() {
		if w.Accepts < after[w.Pid].accepts || w.Requests < after[w.Pid].requests {
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
		if w.AcceptsTotal != after[w.Pid].accepts || w.RequestsTotal != after[w.Pid].requests {
			t.Errorf("the dashboard's overview says %+v; /metrics %+v", w, after[w.Pid])
		}
	}
}
