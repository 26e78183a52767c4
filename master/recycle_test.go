package master_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
)

// startRecycling starts a master of scripted "ok" workers with cfg's
// settings over the tests' defaults, and returns it with its recorder and
// the shared socket's address; the cluster is stopped at the test's end.
func startRecycling(t *testing.T, cfg master.Config, env ...string) (*master.Master, *recorder, string) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 16})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	f, addr := listenerAt(t)
	cfg.Listener, cfg.Arena, cfg.OnEvent = f, a, r.onEvent
	cfg.Exe, cfg.Args = os.Args[0], []string{os.Args[0], "-test.run=^$"}
	cfg.Env = append(append(os.Environ(), envScript+"=ok", envDir+"="+t.TempDir()), env...)
	cfg.HeartbeatInterval = 100 * time.Millisecond
	if cfg.ReplaceTimeout == 0 {
		cfg.ReplaceTimeout = 20 * time.Second
	}
	cfg.StopTimeout = 20 * time.Second
	m, err := master.Start(context.Background(), cfg)
	if err == nil {
		err = m.WaitUp(context.Background())
	}
	if err != nil {
		a.Close()
		t.Fatalf("Start: %v (events %v)", err, r.trace())
	}
	stopAtEnd(t, m, a)
	return m, r, addr
}

// reasons returns the Reason of every event of kind k about the worker who.
func (r *recorder) reasons(k master.Kind, who string) []master.Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []master.Reason
	for _, e := range r.events {
		if e.Kind == k && r.alias[e.Pid] == who {
			out = append(out, e.Reason)
		}
	}
	return out
}

// TestMaxRequestsRecyclesUnderLoad: with MaxRequests and a jitter, each
// worker's limit is drawn in range, and under load every initial worker is
// recycled through the death queue (recycled with ReasonMaxRequests, its
// successor up, then old and died) with no request failing.
func TestMaxRequestsRecyclesUnderLoad(t *testing.T) {
	const max, jitter = 100, 50
	m, r, addr := startRecycling(t, master.Config{Workers: 2, MaxRequests: max, MaxRequestsJitter: jitter})
	for _, w := range m.Workers() {
		if w.RequestLimit < max || w.RequestLimit > max+jitter {
			t.Errorf("worker %d: RequestLimit %d; want within [%d, %d]", w.Pid, w.RequestLimit, max, max+jitter)
		}
	}

	// Half the clients on new connections: a kept-alive GET that fails is
	// replayed by the transport, a new connection's is not.
	stop := make(chan struct{})
	load := &clustertest.Process{Addr: addr}
	kept, wgKept := load.Load(2, true, stop)
	fresh, wgFresh := load.Load(2, false, stop)
	r.waitFor(t, "a:recycled", "a:old", "a:died")
	r.waitFor(t, "b:recycled", "b:old", "b:died")
	close(stop)
	wgKept.Wait()
	wgFresh.Wait()
	for _, n := range []*clustertest.Counts{kept, fresh} {
		if f := n.Failed.Load(); f != 0 {
			t.Errorf("%d of %d requests failed while workers were recycled: %v", f, f+n.Done.Load(), n.Errs())
		}
	}
	for _, who := range []string{"a", "b"} {
		for _, k := range []master.Kind{master.EventRecycled, master.EventOld} {
			if got := r.reasons(k, who); len(got) != 1 || got[0] != master.ReasonMaxRequests {
				t.Errorf("%s's %v events carry reasons %v; want one, %v", who, k, got, master.ReasonMaxRequests)
			}
		}
	}
	if n := m.Replacements()[master.ReasonMaxRequests]; n < 2 {
		t.Errorf("Replacements()[max-requests] = %d; want at least 2", n)
	}
	t.Logf("%d requests, %d replacements for max-requests", kept.Done.Load()+fresh.Done.Load(), m.Replacements()[master.ReasonMaxRequests])
}

// TestRequestLimitsAreDrawnPerWorker: each worker draws its own limit in
// [MaxRequests, MaxRequests+MaxRequestsJitter] (three draws in a range of
// 2^30: equal ones would say the jitter is not drawn per worker).
func TestRequestLimitsAreDrawnPerWorker(t *testing.T) {
	const max, jitter = 1 << 30, 1 << 30
	m, _, _ := startRecycling(t, master.Config{Workers: 3, MaxRequests: max, MaxRequestsJitter: jitter})
	seen := map[uint64]bool{}
	for _, w := range m.Workers() {
		if w.RequestLimit < max || w.RequestLimit > max+jitter {
			t.Errorf("worker %d: RequestLimit %d; want within [%d, %d]", w.Pid, w.RequestLimit, uint64(max), uint64(max+jitter))
		}
		seen[w.RequestLimit] = true
	}
	if len(seen) != 3 {
		t.Errorf("request limits %v: want three different ones", m.Workers())
	}
}

// TestHungRequestsReplaceTheWorker: a handler that never returns is
// answered 503 at the deadline while other requests are served; the worker
// is replaced once HungRequests of its requests hung (not before), through
// the death queue, and its stuck handlers do not keep it from exiting.
func TestHungRequestsReplaceTheWorker(t *testing.T) {
	m, r, addr := startRecycling(t, master.Config{Workers: 1, HungRequests: 2, HungWindow: time.Minute, ReplaceTimeout: 3 * time.Second},
		envReqTimeout+"=300ms")
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	}
	get := func(path string) (int, string, bool) {
		t.Helper()
		resp, err := client().Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: body: %v", path, err)
		}
		return resp.StatusCode, string(b), resp.Close
	}
	hang := func() {
		t.Helper()
		if code, body, closed := get("/hang"); code != http.StatusServiceUnavailable || body != "request timed out\n" || !closed {
			t.Errorf("GET /hang: %d %q (Connection: close %v); want 503 \"request timed out\" with Connection: close", code, body, closed)
		}
	}
	hung := func() uint64 {
		ws := m.Workers()
		if len(ws) == 0 {
			return 0
		}
		return ws[0].HungRequests
	}

	// A hung request does not hold up the others.
	var wg sync.WaitGroup
	wg.Go(hang)
	for range 5 {
		if code, body, _ := get("/"); code != 200 || !strings.HasPrefix(body, `{"pid":`) {
			t.Errorf("GET / beside a hung request: %d %q", code, body)
		}
	}
	wg.Wait()
	for deadline := time.Now().Add(30 * time.Second); hung() != 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := hung(); n != 1 {
		t.Fatalf("HungRequests %d after one hung request; want 1", n)
	}
	// The second one reaches HungRequests: replaced.
	hang()
	r.waitFor(t, "a:recycled", "b:listening", "a:old", "a:died")
	if got := r.reasons(master.EventRecycled, "a"); len(got) != 1 || got[0] != master.ReasonHungRequests {
		t.Errorf("a's recycled events carry %v; want one, %v", got, master.ReasonHungRequests)
	}
	if code, body, _ := get("/"); code != 200 || body != fmt.Sprintf(`{"pid":%d}`, r.pid("b")) {
		t.Errorf("GET / after the replacement: %d %q; want worker b's answer", code, body)
	}
	if n := m.Replacements()[master.ReasonHungRequests]; n != 1 {
		t.Errorf("Replacements()[hung-requests] = %d; want 1", n)
	}
}
