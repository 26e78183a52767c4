package fasthttpserver_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/valyala/fasthttp"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"fasthttp": func() { clustertest.ServeConfig(config("127.0.0.1:0")) }})
}

// get GETs the cluster with a fasthttp client and returns the serving pid.
func get(c *fasthttp.Client, addr string) (int, error) {
	status, body, err := c.GetTimeout(nil, "http://"+addr+"/", 10*time.Second)
	if err != nil {
		return 0, err
	}
	if status != fasthttp.StatusOK {
		return 0, fmt.Errorf("status %d: %s", status, body)
	}
	var r clustertest.Reply
	return r.Pid, json.Unmarshal(body, &r)
}

// TestFastHTTPThroughARollingRestart runs the example as a real cluster and
// calls it with real clients: both workers answer; under net/http clients
// on kept connections and on a new connection per request, and fasthttp
// clients (kept connections), a rolling restart replaces both workers with
// 0 failed requests; the new workers answer, and the monitor counts the
// requests the handler told CountRequest about.
func TestFastHTTPThroughARollingRestart(t *testing.T) {
	p := clustertest.Start(t, "fasthttp")
	before := p.ActivePids()
	if !p.ServedByAll(before) {
		t.Fatalf("not every worker of %v answered", before)
	}

	p.RollingRestartUnder(before, 60*time.Second, p.NamedLoad(4, true), p.NamedLoad(2, false), clustertest.NamedLoad{
		Name: "2 fasthttp clients, kept connections",
		Start: func(stop <-chan struct{}) (*clustertest.Counts, *sync.WaitGroup) {
			return clustertest.Loop(2, stop, func() (*fasthttp.Client, func()) {
				c := &fasthttp.Client{MaxConnsPerHost: 1}
				return c, c.CloseIdleConnections
			}, func(c *fasthttp.Client) error { _, err := get(c, p.Addr); return err })
		},
	})

	now := p.ActivePids()
	if pid, err := get(&fasthttp.Client{}, p.Addr); err != nil || !now[pid] {
		t.Fatalf("after the rolling restart: pid %d, %v; want one of the new workers %v", pid, err, now)
	}
	if ok, _, samples := p.WaitMetric("cluster2_worker_requests_total", now, 1, 30*time.Second); !ok {
		t.Fatalf("/metrics counts no request of the new workers %v:\n%s", now, samples)
	}
}
