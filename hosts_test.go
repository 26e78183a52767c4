package cluster2_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/redistest"
)

// The scenario variables of childAllHosts.
const (
	envHostsRedis = "T_HOSTS_REDIS" // Redis's address
	envHostsName  = "T_HOSTS_NAME"  // Config.HostName
)

// emitResult is how an emit to AllHosts went, as childAllHosts answers it.
type emitResult struct {
	Pid         int    `json:"pid"`
	Err         string `json:"err,omitempty"`
	Backplane   bool   `json:"backplane"`   // errors.Is(err, emitter.ErrBackplane)
	NoBackplane bool   `json:"noBackplane"` // errors.Is(err, emitter.ErrNoBackplane)
}

func emitAllHosts(n int) emitResult {
	err := emitter.To(emitter.AllHosts).Emit("deploy", n)
	r := emitResult{Pid: os.Getpid(), Backplane: errors.Is(err, emitter.ErrBackplane), NoBackplane: errors.Is(err, emitter.ErrNoBackplane)}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// childAllHosts is one host of TestAllHostsAcrossTwoClusters: a two-worker
// cluster on the shared Redis. GET /emit?n=N (a worker; the master's control
// server has the same route) emits deploy(N) to AllHosts and answers an
// emitResult. Every process that receives a deploy says so: the master
// prints "SEEN master <host> <from> <n>", a worker tells the master, which
// prints "SEEN <worker pid> <host> <from> <n>".
func childAllHosts() {
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	me := os.Getpid()
	emitter.On("deploy", func(e emitter.Event) {
		n, _ := emitter.Arg[int](e, 0)
		if cluster2.CurrentRole() == cluster2.Master {
			say("SEEN master %s %d %d", e.Host, e.From, n)
			return
		}
		emitter.To(emitter.Master).Emit("deploy-seen", me, e.Host, e.From, n)
	})
	emitter.On("deploy-seen", func(e emitter.Event) {
		var pid, from, n int
		var host string
		e.Decode(&pid, &host, &from, &n)
		say("SEEN %d %s %d %d", pid, host, from, n)
	})
	emitRoute := func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		json.NewEncoder(w).Encode(emitAllHosts(n))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/emit", emitRoute)
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: 2, Addr: "127.0.0.1:0", Handler: mux, HostName: os.Getenv(envHostsName),
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		HeartbeatInterval: 200 * time.Millisecond, NannyTolerance: -1, NoSignals: true,
		Monitor: cluster2.MonitorConfig{Disabled: true},
		Cache:   allHostsCache(os.Getenv(envHostsRedis)),
	})
	if err != nil {
		say("LISTEN-ERROR %v", err)
		os.Exit(3)
	}
	if !c.IsMaster() {
		c.Wait()
		return
	}
	ctl := clustertest.ControlMux(c)
	ctl.HandleFunc("/emit", emitRoute)
	clustertest.Serve(c, ctl)
}

// host is one cluster of the test, with what its master printed.
type hostCluster struct {
	*clustertest.Process
	name    string
	workers []int
	seen    map[string]bool // "<receiver> <host> <from> <n>"
}

func startHost(t *testing.T, srv *redistest.Server, name string) *hostCluster {
	t.Helper()
	p := clustertest.Start(t, "allhosts", envHostsRedis+"="+srv.Addr(), envHostsName+"="+name)
	h := &hostCluster{Process: p, name: name, seen: map[string]bool{}}
	for _, w := range p.Workers() {
		h.workers = append(h.workers, w.Pid)
	}
	if len(h.workers) != 2 {
		t.Fatalf("host %s: workers %v; want 2", name, h.workers)
	}
	return h
}

// takeLines records the SEEN lines printed so far.
func (h *hostCluster) takeLines(t *testing.T) {
	t.Helper()
	for {
		select {
		case l := <-h.Lines():
			if rest, ok := strings.CutPrefix(l, "SEEN "); ok {
				h.seen[rest] = true
			} else if !strings.HasPrefix(l, "STOPPED") {
				t.Fatalf("host %s: %s", h.name, l)
			}
		default:
			return
		}
	}
}

// sawAll waits until every process of h (the master and both workers)
// received deploy(n) from pid from on host origin.
func (h *hostCluster) sawAll(t *testing.T, origin string, from, n int) {
	t.Helper()
	want := []string{fmt.Sprintf("master %s %d %d", origin, from, n)}
	for _, w := range h.workers {
		want = append(want, fmt.Sprintf("%d %s %d %d", w, origin, from, n))
	}
	deadline := time.Now().Add(wait)
	for {
		h.takeLines(t)
		missing := 0
		for _, s := range want {
			if !h.seen[s] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: after %v, saw %v; want %q", h.name, wait, h.seen, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *hostCluster) emit(t *testing.T, n int) emitResult {
	t.Helper()
	var r emitResult
	if err := h.Control("/emit?n="+strconv.Itoa(n), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// emitFromWorker asks whichever worker takes the request to emit.
func (h *hostCluster) emitFromWorker(t *testing.T, n int) emitResult {
	t.Helper()
	resp, err := http.Get("http://" + h.Addr + "/emit?n=" + strconv.Itoa(n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r emitResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// Two clusters (two masters, on their own ports) sharing one Redis: an event
// emitted to all hosts on A runs on B's master and workers (and on A's),
// carrying A as its origin, from A's master and from one of A's workers;
// with Redis killed the emit returns an error wrapping
// emitter.ErrBackplane, from the master and from a worker, and A's own
// processes still get the event.
func TestAllHostsAcrossTwoClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters and a redis-server")
	}
	srv := redistest.Start(t)
	a, b := startHost(t, srv, "host-a"), startHost(t, srv, "host-b")
	// The subscriptions are made once each bridge is up: emit until B hears.
	deadline := time.Now().Add(wait)
	for n := 1; ; n++ {
		if r := a.emit(t, n); r.Err != "" && !r.Backplane {
			t.Fatalf("emit on A: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
		b.takeLines(t)
		if b.seen[fmt.Sprintf("master host-a %d %d", a.Pid(), n)] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B heard nothing from A in %v: %v", wait, b.seen)
		}
	}

	if r := a.emit(t, 100); r.Err != "" {
		t.Fatalf("emit on A's master: %+v", r)
	}
	a.sawAll(t, "host-a", a.Pid(), 100)
	b.sawAll(t, "host-a", a.Pid(), 100)

	r := a.emitFromWorker(t, 200)
	if r.Err != "" {
		t.Fatalf("emit on A's worker: %+v", r)
	}
	a.sawAll(t, "host-a", r.Pid, 200)
	b.sawAll(t, "host-a", r.Pid, 200)

	b.emit(t, 300) // and the other way
	a.sawAll(t, "host-b", b.Pid(), 300)

	srv.Kill()
	if r := a.emit(t, 400); !r.Backplane {
		t.Fatalf("emit on A's master with Redis killed: %+v; want ErrBackplane", r)
	}
	a.sawAll(t, "host-a", a.Pid(), 400)
	r = a.emitFromWorker(t, 500)
	if !r.Backplane {
		t.Fatalf("emit on A's worker with Redis killed: %+v; want ErrBackplane", r)
	}
	a.sawAll(t, "host-a", r.Pid, 500)
	b.takeLines(t)
	for s := range b.seen {
		if strings.HasSuffix(s, " 400") || strings.HasSuffix(s, " 500") {
			t.Fatalf("B saw %q while Redis was down", s)
		}
	}
}

// allHostsCache is the hosts' cache configuration: no cache of their own,
// Redis at addr for the events (quick to notice Redis gone).
func allHostsCache(addr string) cluster2.CacheConfig {
	return cluster2.CacheConfig{Redis: cluster2.RedisConfig{Addr: addr, PingEvery: 100 * time.Millisecond, Timeout: 200 * time.Millisecond}}
}
