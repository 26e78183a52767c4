package cluster2_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// TestConfigNamesOneServer checks that a Config names one server, net/http's
// Handler or Serve with Drain, and that every other choice is refused with
// ErrInvalidConfig naming the fields.
func TestConfigNamesOneServer(t *testing.T) {
	h := http.NotFoundHandler()
	serve := func(context.Context, net.Listener) error { return nil }
	drain := func(context.Context) error { return nil }
	newServer := func(h http.Handler) *http.Server { return &http.Server{Handler: h} }
	configure := func(_ context.Context, h http.Handler) (http.Handler, error) { return h, nil }
	for _, tc := range []struct {
		name string
		cfg  cluster2.Config
		want string // "" valid, else what the error names
	}{
		{"Handler", cluster2.Config{Handler: h}, ""},
		{"Serve and Drain", cluster2.Config{Serve: serve, Drain: drain}, ""},
		{"neither", cluster2.Config{}, "neither Handler nor Serve"},
		{"both", cluster2.Config{Handler: h, Serve: serve, Drain: drain}, "Handler and Serve are both set"},
		{"Serve without Drain", cluster2.Config{Serve: serve}, "Serve is set without Drain"},
		{"Drain without Serve", cluster2.Config{Handler: h, Drain: drain}, "Drain is set without Serve"},
		{"NewServer with Serve", cluster2.Config{Serve: serve, Drain: drain, NewServer: newServer}, "NewServer is set with Serve"},
		{"ConfigureApp with Serve", cluster2.Config{Serve: serve, Drain: drain, ConfigureApp: configure}, "ConfigureApp is set with Serve"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v; want nil", tc.name, err)
		case tc.want != "" && (!errors.Is(err, cluster2.ErrInvalidConfig) || !strings.Contains(fmtErr(err), tc.want)):
			t.Errorf("%s: Validate() = %v; want ErrInvalidConfig saying %q", tc.name, err, tc.want)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestServeHookRunsACustomServer runs the workers' server through
// Config.Serve and Config.Drain (an http.Server the worker does not know
// as one, its requests counted with CountRequest): warm-up goes through the
// hook (the child's WarmUp GETs its private address), both workers serve, a
// paused worker's Serve returns and a resumed one serves again, a rolling
// restart under keep-alive and new-connection load fails no request, the
// monitor's /metrics counts the requests CountRequest counted and the
// connections the worker's listener accepted, the shared cache and the
// emitter work the same (a key set through one worker is read through the
// other; the workers' statuses reach the monitor), and a Serve that returns
// while listening stops its worker, which the master replaces.
func TestServeHookRunsACustomServer(t *testing.T) {
	failDir := t.TempDir()
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvServe+"=1", clustertest.EnvServeFail+"="+failDir)
	before := tc.ActivePids()
	if len(before) != 2 || !tc.ServedByAll(before) {
		t.Fatalf("workers %v did not all serve", before)
	}

	// Pause: the paused worker serves nothing new; resumed, it serves again.
	paused := tc.AnyActive()
	if err := tc.Control("/pause?pid="+strconv.Itoa(paused), nil); err != nil {
		t.Fatalf("pause %d: %v", paused, err)
	}
	if seen := tc.SeenPids(20); seen[paused] != 0 {
		t.Fatalf("paused worker %d served %d of 20 new connections", paused, seen[paused])
	}
	if err := tc.Control("/resume?pid="+strconv.Itoa(paused), nil); err != nil {
		t.Fatalf("resume %d: %v", paused, err)
	}
	if !tc.ServedByAll(before) {
		t.Fatalf("the resumed worker %d did not serve again", paused)
	}

	// A rolling restart under load: 0 failed requests.
	tc.RollingRestartUnder(before, wait, tc.NamedLoad(4, true), tc.NamedLoad(4, false))

	// The monitor's request and connection metrics of the new workers.
	now := tc.ActivePids()
	tc.SeenPids(20)
	if ok, n, samples := tc.WaitMetric("cluster2_worker_requests_total", now, 20, wait); !ok {
		t.Fatalf("/metrics: %v requests of workers %v; want at least 20:\n%s", n, now, samples)
	}
	if ok, n, samples := tc.WaitMetric("cluster2_worker_connections_total", now, 20, wait); !ok {
		t.Fatalf("/metrics: %v connections of workers %v; want at least 20:\n%s", n, now, samples)
	}

	// The shared cache and the emitter work the same: a key set through one
	// worker is read through the other; each worker's status (status.os)
	// reaches the monitor over the emitter's rings.
	setBy := kvGet(t, tc.Addr, "/kv?k=shared&v=42")
	if setBy.Value != "42" {
		t.Fatalf("/kv set: %+v; want the value 42", setBy)
	}
	if !xtesting.Eventually(wait, func() bool {
		r := kvGet(t, tc.Addr, "/kv?k=shared")
		if r.Value != "42" {
			t.Fatalf("/kv on worker %d: %+v; want the value 42 that worker %d set", r.Pid, r, setBy.Pid)
		}
		return r.Pid != setBy.Pid
	}) {
		t.Fatalf("no request reached the worker that did not set the key")
	}
	if !xtesting.Eventually(wait, func() bool {
		var st map[string]map[string]json.RawMessage
		resp, err := http.Get("http://" + tc.Mon + "/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		n := 0
		for pid := range now {
			if _, ok := st["status.os"][strconv.Itoa(pid)]; ok {
				n++
			}
		}
		if n == len(now) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	}) {
		t.Fatalf("/status lacks the status.os of workers %v", now)
	}

	// A Serve that returns while listening: its worker stops, the master
	// replaces it, the other one serves meanwhile.
	failing := tc.AnyActive()
	if err := os.WriteFile(filepath.Join(failDir, strconv.Itoa(failing)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !xtesting.Eventually(wait, func() bool { time.Sleep(20 * time.Millisecond); return !clustertest.Alive(failing) }) {
		t.Fatalf("worker %d whose Serve failed still runs: %+v", failing, tc.Workers())
	}
	if !xtesting.Eventually(wait, func() bool {
		pids, err := tc.Active()
		if err == nil && len(pids) == 2 && !slices.Contains(pids, failing) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	}) {
		t.Fatalf("worker %d whose Serve failed was not replaced: %+v", failing, tc.Workers())
	}
	if r, err := tc.Get("/"); err != nil || r.Pid == failing {
		t.Fatalf("after the failed Serve: %+v %v", r, err)
	}
}

// kvGet GETs path (the child's /kv) on a new connection and decodes it.
func kvGet(t *testing.T, addr, path string) clustertest.KV {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var r clustertest.KV
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return r
}
