package cluster2_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// TestRecyclingThroughConfig: cluster2.Config's MaxRequests (with jitter),
// Server.RequestTimeout and HungRequests reach the workers and the master
// of a real cluster: a hung request is answered 503 and (HungRequests 1)
// gets its worker replaced; under load, workers are recycled after their
// requests with no request failing; /metrics shows each worker's limit in
// range, the hung request and the replacements by reason, and the events
// say "recycled".
func TestRecyclingThroughConfig(t *testing.T) {
	mon := freeAddr(t)
	c := &monCluster{Process: clustertest.Spec{Child: "cluster", Env: []string{
		clustertest.EnvWorkers + "=2", clustertest.EnvMonitor + "=" + mon,
		clustertest.EnvStopTO + "=20s", clustertest.EnvReplaceTO + "=3s",
		clustertest.EnvMaxRequests + "=60", clustertest.EnvMaxReqJit + "=20",
		clustertest.EnvRequestTO + "=300ms", clustertest.EnvHung + "=1",
	}}.Launch(t), t: t, mon: "http://" + mon}
	c.waitReady()
	metrics := func() string { _, body := get(c.mon + "/metrics"); return body }
	replaced := func(reason string) int {
		m := regexp.MustCompile(`cluster2_worker_replacements_total\{reason="` + reason + `"\} (\d+)`).FindStringSubmatch(metrics())
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	limits := regexp.MustCompile(`cluster2_worker_request_limit\{pid="\d+",slot="\d+"\} (\d+)`).FindAllStringSubmatch(metrics(), -1)
	if len(limits) != 2 {
		t.Errorf("/metrics has %d request limits; want one per worker (2)", len(limits))
	}
	for _, l := range limits {
		if n, _ := strconv.Atoi(l[1]); n < 60 || n > 80 {
			t.Errorf("a worker's request limit is %d; want within [60, 80]", n)
		}
	}

	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := hc.Get(c.app + "/hang")
	if err != nil {
		t.Fatalf("GET /hang: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /hang: %d; want 503 at the RequestTimeout", resp.StatusCode)
	}
	if !xtesting.Eventually(60*time.Second, func() bool { return replaced("hung-requests") == 1 }) {
		t.Fatalf("replacements for hung-requests never 1:\n%s", replacementLines(metrics()))
	}

	stop := make(chan struct{})
	n, wg := c.Load(4, false, stop)
	ok := xtesting.Eventually(60*time.Second, func() bool { return replaced("max-requests") >= 2 })
	close(stop)
	wg.Wait()
	if !ok {
		t.Fatalf("replacements for max-requests never reached 2:\n%s", replacementLines(metrics()))
	}
	if f := n.Failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed while workers were recycled: %v", f, f+n.Done.Load(), n.Errs())
	}
	recycled := 0
	for _, e := range (&testCluster{c.Process, t}).events() {
		if strings.HasSuffix(e, "-recycled") {
			recycled++
		}
	}
	if recycled < 3 {
		t.Errorf("%d recycled events; want at least 3 (one hung, two max-requests)", recycled)
	}
	t.Logf("%d requests; %s", n.Done.Load(), replacementLines(metrics()))
}

// replacementLines returns the replacement counters of a /metrics body.
func replacementLines(body string) string {
	var out []string
	for l := range strings.Lines(body) {
		if strings.HasPrefix(l, "cluster2_worker_replacements_total{") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "; ")
}
