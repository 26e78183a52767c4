package cluster2_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
)

func TestTwoWorkersServe(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	ws := tc.Workers()
	if len(ws) != 2 {
		t.Fatalf("got %d workers; want 2: %+v", len(ws), ws)
	}
	want := map[int]bool{}
	for _, w := range ws {
		if w.State.String() != "active" {
			t.Errorf("worker %d is %v; want active", w.Pid, w.State)
		}
		want[w.Pid] = true
	}
	if !tc.ServedByAll(want) {
		t.Fatalf("requests were not served by both workers")
	}
	r, err := tc.Get("/")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Nonblock {
		t.Errorf("shared socket is in blocking mode after spawning the workers")
	}
}

func TestListenBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = cluster2.Listen(context.Background(), cluster2.Config{
		Workers: 1, Addr: ln.Addr().String(), Handler: clustertest.Handler(), NoSignals: true})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen on a busy port: got %v; want an error wrapping EADDRINUSE", err)
	}
}

// A busy monitor address is Listen's error, before any worker starts: the
// monitor is what load balancers check.
func TestListenBusyMonitorPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: 1, Addr: "127.0.0.1:0", MonitorAddr: ln.Addr().String(), Handler: clustertest.Handler(), NoSignals: true})
	if !errors.Is(err, syscall.EADDRINUSE) || c != nil {
		t.Fatalf("Listen with a busy monitor port: got %v, %v; want an error wrapping EADDRINUSE", c, err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cfg   cluster2.Config
		field string
	}{
		{"no handler", cluster2.Config{}, "Handler"},
		{"negative workers", cluster2.Config{Handler: clustertest.Handler(), Workers: -1}, "Workers"},
		{"bad cache mode", cluster2.Config{Handler: clustertest.Handler(), Cache: cluster2.CacheConfig{Mode: "x"}}, "Cache.Mode"},
		{"small arena", cluster2.Config{Handler: clustertest.Handler(), ArenaSize: 10}, "ArenaSize"},
		{"nanny below heartbeat", cluster2.Config{Handler: clustertest.Handler(), NannyTolerance: time.Second}, "NannyTolerance"},
		{"long host name", cluster2.Config{Handler: clustertest.Handler(), HostName: strings.Repeat("h", 256)}, "HostName"},
		{"negative max requests", cluster2.Config{Handler: clustertest.Handler(), MaxRequests: -1}, "MaxRequests -1 is negative"},
		{"negative jitter", cluster2.Config{Handler: clustertest.Handler(), MaxRequests: 10, MaxRequestsJitter: -1}, "MaxRequestsJitter -1 is negative"},
		{"jitter without max", cluster2.Config{Handler: clustertest.Handler(), MaxRequestsJitter: 5}, "MaxRequestsJitter 5 is set without MaxRequests"},
		{"negative hung window", cluster2.Config{Handler: clustertest.Handler(), HungWindow: -time.Second}, "HungWindow -1s is negative"},
		{"too many hung requests", cluster2.Config{Handler: clustertest.Handler(), HungRequests: 10001}, "HungRequests 10001"},
	} {
		err := tt.cfg.Validate()
		if !errors.Is(err, cluster2.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: Validate() = %v; want ErrInvalidConfig naming %s", tt.name, err, tt.field)
		}
	}
	if err := (cluster2.Config{Handler: clustertest.Handler()}).Validate(); err != nil {
		t.Errorf("zero Config with a Handler: %v; want valid", err)
	}
	ok := cluster2.Config{Handler: clustertest.Handler(), MaxRequests: 1000, MaxRequestsJitter: 50, HungRequests: -1}
	if err := ok.Validate(); err != nil {
		t.Errorf("MaxRequests with jitter, HungRequests off: %v; want valid", err)
	}
}

func TestShutdownAndPidFiles(t *testing.T) {
	dir := t.TempDir()
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvPidDir+"="+dir)
	pids := tc.ActivePids()
	files := func() []string {
		es, _ := os.ReadDir(dir)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	want := []string{"master." + strconv.Itoa(tc.Cmd.Process.Pid) + ".pid"}
	for pid := range pids {
		want = append(want, "worker."+strconv.Itoa(pid)+".pid")
	}
	slices.Sort(want)
	if got := files(); !slices.Equal(got, want) {
		t.Fatalf("pid files %v; want %v", got, want)
	}
	if err := tc.Control("/shutdown", nil); err != nil {
		t.Fatal(err)
	}
	if !tc.WaitExit(30 * time.Second) {
		t.Fatalf("master still running after Shutdown")
	}
	for pid := range pids {
		if clustertest.Alive(pid) {
			t.Errorf("worker %d alive after Shutdown", pid)
		}
	}
	if got := files(); len(got) != 0 {
		t.Errorf("pid files left after Shutdown: %v", got)
	}
}

func TestNewServerServesTLS(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvTLS+"=1")
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	r, err := clustertest.Get(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "https://"+tc.Addr+"/")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	if !tc.ActivePids()[r.Pid] {
		t.Fatalf("served by pid %d; want a worker", r.Pid)
	}
}
