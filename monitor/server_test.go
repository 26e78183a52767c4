package monitor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
)

// serve starts a Server on src with opts behind an httptest server.
func serve(t *testing.T, src monitor.Source, opts monitor.Options) (*monitor.Server, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := monitor.New(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close() // ends the event streams first, or hs.Close waits for them
		hs.Close()
	})
	return s, hs.URL
}

// do sends one request and returns the status and body.
func do(t *testing.T, method, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// want checks one request's status and that its body contains sub.
func want(t *testing.T, method, url string, code int, sub string, header ...string) string {
	t.Helper()
	got, body := do(t, method, url, header...)
	if got != code || !strings.Contains(body, sub) {
		t.Fatalf("%s %s = %d %q; want %d containing %q", method, url, got, body, code, sub)
	}
	return body
}

func TestLivez(t *testing.T) {
	s, url := serve(t, newFake(), monitor.Options{})
	want(t, "GET", url+"/livez", 200, "ok")
	s.HandleEvent(master.Event{Kind: master.EventDown}) // stopping: the ECV goes down, liveness does not
	want(t, "GET", url+"/livez", 200, "ok")
	want(t, "GET", url+"/ecv", 503, monitor.BodyDown)
}

func TestECVControl(t *testing.T) {
	f := newFake(101, 102)
	var events []string
	s, url := serve(t, f, monitor.Options{OnEvent: func(e master.Event) { events = append(events, e.Name()) }})
	want(t, "GET", url+"/ecv", 503, monitor.BodyDown+" warming up")
	want(t, "HEAD", url+"/ecv", 503, "")
	s.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp)
	want(t, "GET", url+"/ecv?probe=1", 200, monitor.BodyUp) // a query string still matches (the original 404'd)
	want(t, "POST", url+"/ecv/markDown", 200, monitor.BodyDisabled)
	want(t, "GET", url+"/ecv", 503, monitor.BodyDisabled+" marked down")
	want(t, "GET", url+"/ecv/markUp", 405, "POST") // GET changes nothing (ECVOptions.MarkWithGET)
	want(t, "GET", url+"/ecv", 503, monitor.BodyDisabled)
	want(t, "POST", url+"/ecv/markUp", 200, monitor.BodyUp)
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp)
	want(t, "DELETE", url+"/ecv/markDown", 405, "")
	if got := strings.Join(events, ","); got != "markDown,markUp" {
		t.Fatalf("OnEvent got %s; want markDown,markUp", got)
	}
	// Too few active workers: down, whatever the marks.
	f.setState(101, master.Paused)
	f.setState(102, master.Warming)
	want(t, "GET", url+"/ecv", 503, "0 active workers, fewer than 1")
	f.setState(102, master.Active)
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp)
	// A stop: down before any worker drains, and it stays down.
	s.HandleEvent(master.Event{Kind: master.EventDown})
	want(t, "GET", url+"/ecv", 503, monitor.BodyDown+" stopping")
	want(t, "POST", url+"/ecv/markUp", 200, "")
	want(t, "GET", url+"/ecv", 503, monitor.BodyDown+" stopping")
}

func TestECVOptions(t *testing.T) {
	f := newFake(101, 102)
	s, url := serve(t, f, monitor.Options{ECV: monitor.ECVOptions{Root: "/health", MarkUp: "/up", MarkDown: "/down",
		MinActive: 2, NotFoundWhenMarkedDown: true, StartMarkedDown: true}})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", url+"/health", 404, monitor.BodyDisabled) // HAProxy disable-on-404
	want(t, "GET", url+"/ecv", 404, "")
	want(t, "POST", url+"/up", 200, monitor.BodyUp)
	want(t, "GET", url+"/health", 200, monitor.BodyUp)
	f.setState(102, master.Paused)
	want(t, "GET", url+"/health", 503, "1 active workers, fewer than 2") // not 404: not an operator's mark
	for _, bad := range []monitor.ECVOptions{{Mode: "bogus"}, {Mode: monitor.ModeMonitor}, {Root: "ecv"}, {MarkUp: "/ecv"}, {Root: "/"}} {
		if _, err := monitor.New(f, monitor.Options{ECV: bad}); !errors.Is(err, monitor.ErrInvalidConfig) {
			t.Errorf("New with ECV %+v: err = %v; want ErrInvalidConfig", bad, err)
		}
	}
}

func TestECVMonitorMode(t *testing.T) {
	healthy := true
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || !healthy {
			http.Error(w, "sick", 500)
			return
		}
		io.WriteString(w, "fine")
	}))
	defer app.Close()
	s, url := serve(t, newFake(101), monitor.Options{ECV: monitor.ECVOptions{Mode: monitor.ModeMonitor, CheckURL: app.URL + "/health"}})
	want(t, "GET", url+"/ecv", 503, "warming up")
	s.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp)
	healthy = false
	want(t, "GET", url+"/ecv", 503, "check failed: status 500")
	want(t, "POST", url+"/ecv/markDown", 409, "not in control mode")
	healthy = true
	s2, url2 := serve(t, newFake(101), monitor.Options{ECV: monitor.ECVOptions{Mode: monitor.ModeMonitor,
		CheckURL: app.URL + "/health", Validator: func(code int, body []byte, err error) bool { return string(body) == "nope" }}})
	s2.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", url2+"/ecv", 503, "check failed")
}

func TestTokenRule(t *testing.T) {
	const token = "s3cret"
	f := newFake(101)
	s, url := serve(t, f, monitor.Options{Addr: "0.0.0.0:0", Token: token, ProfileDir: t.TempDir()})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	guarded := []struct{ method, path string }{
		{"POST", "/debug/api/workers/101/pause"}, {"POST", "/debug/api/workers/101/resume"},
		{"POST", "/debug/api/workers/101/replace"}, {"POST", "/debug/api/rolling-restart"},
		{"POST", "/debug/api/ecv/markDown"}, {"POST", "/debug/api/ecv/markUp"},
		{"POST", "/ecv/markDown"}, {"POST", "/ecv/markUp"},
		{"GET", "/debug/workers/101/pprof/heap"}, {"GET", "/debug/api/caches/c/changes"}, {"GET", "/status"},
	}
	for _, g := range guarded {
		want(t, g.method, url+g.path, 401, "bearer token required")
		want(t, g.method, url+g.path, 401, "", "Authorization", "Bearer wrong")
		if code, body := do(t, g.method, url+g.path, "Authorization", "Bearer "+token); code == 401 || code == 403 {
			t.Errorf("%s %s with the token = %d %q; want it let through", g.method, g.path, code, body)
		}
	}
	want(t, "POST", url+"/debug/api/workers/101/pause?access_token="+token, 200, `"ok": true`)
	// Reads stay open.
	for _, p := range []string{"/ecv", "/livez", "/debug", "/debug/api/overview", "/deps", "/metrics"} {
		if code, _ := do(t, "GET", url+p); code == 401 || code == 403 {
			t.Errorf("GET %s without token = %d; want open", p, code)
		}
	}
	// Beyond loopback with no token configured: actions are off.
	_, url2 := serve(t, f, monitor.Options{Addr: ":8081"})
	want(t, "POST", url2+"/debug/api/workers/101/pause", 403, "no token configured")
	want(t, "GET", url2+"/ecv", 503, "")
	// On loopback no token is needed, but a cross-site browser request is refused.
	_, url3 := serve(t, f, monitor.Options{Addr: "127.0.0.1:0"})
	want(t, "POST", url3+"/debug/api/workers/101/resume", 200, `"ok": true`)
	want(t, "POST", url3+"/debug/api/workers/101/pause", 403, "", "Sec-Fetch-Site", "cross-site")
	if got := strings.Join(f.done(), ","); got != "pause 101,resume 101,replace 101,rolling-restart,pause 101,resume 101" {
		t.Fatalf("actions = %s", got)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, w := range map[string]bool{"127.0.0.1:8081": true, "127.1.2.3:1": true, "[::1]:80": true, "localhost:1": true,
		":8081": false, "0.0.0.0:1": false, "[::]:1": false, "10.0.0.1:1": false, "example.com:1": false, "bad": false} {
		if got := monitor.IsLoopback(addr); got != w {
			t.Errorf("IsLoopback(%q) = %v; want %v", addr, got, w)
		}
	}
}

func TestWorkerActions(t *testing.T) {
	f := newFake(101, 102)
	_, url := serve(t, f, monitor.Options{})
	want(t, "POST", url+"/debug/api/workers/101/pause", 200, `"action": "pause"`)
	want(t, "POST", url+"/debug/api/workers/101/resume", 200, `"action": "resume"`)
	want(t, "POST", url+"/debug/api/workers/102/replace", 200, `"action": "replace"`)
	want(t, "POST", url+"/debug/api/rolling-restart", 202, `"rolling-restart"`)
	want(t, "POST", url+"/debug/api/workers/999/pause", 404, "no worker with pid")
	want(t, "POST", url+"/debug/api/workers/abc/pause", 404, "no worker with pid")
	want(t, "POST", url+"/debug/api/workers/101/explode", 404, "unknown action")
	want(t, "GET", url+"/debug/api/workers/101/pause", 405, "")
	f.mu.Lock()
	f.fail = master.ErrWrongState
	f.mu.Unlock()
	want(t, "POST", url+"/debug/api/workers/101/pause", 409, master.ErrWrongState.Error())
	// ?wait=1: the restart's own error is the answer.
	want(t, "POST", url+"/debug/api/rolling-restart?wait=1", 409, master.ErrWrongState.Error())
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	if !eventually(func() bool { return len(f.done()) == 4 }) {
		t.Fatalf("actions = %v; want 4 (the rolling restart runs after its answer)", f.done())
	}
	want(t, "POST", url+"/debug/api/rolling-restart?wait=1", 200, `"rolling-restart"`)
	if got := f.done(); len(got) != 5 || got[4] != "rolling-restart" {
		t.Fatalf("actions = %v; want the waited rolling restart done when it answered", got)
	}
}

func eventually(cond func() bool) bool {
	for range 500 {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestAPI(t *testing.T) {
	f := newFake(101, 102)
	f.caches = []monitor.CacheInfo{{Name: "users", Persist: true, Expire: time.Minute, Hits: 3, Misses: 1, Entries: 2, Bytes: 64, Evictions: 5}}
	s, url := serve(t, f, monitor.Options{ProfileDir: "/nonexistent"})
	s.HandleEvent(master.Event{Kind: master.EventListening, Pid: 101, Slot: 1})
	s.HandleEvent(master.Event{Kind: master.EventUp})

	var ov struct {
		MasterPid int
		ECV       monitor.ECVState
		Workers   []struct {
			Pid, Slot     int
			State         string
			RSSBytes      uint64  `json:"rssBytes"`
			RPS           float64 `json:"rps"`
			RequestsTotal uint64  `json:"requestsTotal"`
			AcceptsTotal  uint64  `json:"acceptsTotal"`
			History       struct{ RPS, RSS []float64 }
		}
		Caches []struct {
			Name     string
			HitRatio float64
			Persist  bool
		}
		Events   []struct{ Name string }
		Profiles bool
	}
	getJSON(t, url+"/debug/api/overview", &ov)
	if ov.MasterPid != os.Getpid() || !ov.ECV.Up || len(ov.Workers) != 2 || !ov.Profiles {
		t.Fatalf("overview = %+v", ov)
	}
	w := ov.Workers[0]
	if w.Pid != 101 || w.State != "active" || w.RSSBytes != 50<<20 || w.RPS != 8 || w.RequestsTotal != 40 || w.AcceptsTotal != 100 ||
		len(w.History.RPS) != 1 || w.History.RSS[0] != 50<<20 {
		t.Fatalf("worker = %+v", w)
	}
	if len(ov.Caches) != 1 || ov.Caches[0].HitRatio != 0.75 || !ov.Caches[0].Persist {
		t.Fatalf("caches = %+v", ov.Caches)
	}
	if len(ov.Events) != 2 || ov.Events[0].Name != "worker-101-listening" {
		t.Fatalf("events = %+v", ov.Events)
	}
	want(t, "GET", url+"/debug/api/workers", 200, `"pid": 102`)
	want(t, "GET", url+"/debug/api/workers/102", 200, `"slot": 2`)
	want(t, "GET", url+"/debug/api/workers/103", 404, "no worker")
	want(t, "GET", url+"/debug/api/caches", 200, `"hitRatio": 0.75`)
	want(t, "GET", url+"/debug/api/ecv", 200, `"up": true`)
	want(t, "GET", url+"/debug/api/events", 200, `"name": "up"`)
	// A source without caches shows none.
	_, url2 := serve(t, onlyWorkers{newFake(7)}, monitor.Options{})
	want(t, "GET", url2+"/debug/api/caches", 200, "[]")
	want(t, "GET", url2+"/debug/api/caches/x/changes", 404, "no such cache")
}

// onlyWorkers hides the fake's optional interfaces.
type onlyWorkers struct{ f *fakeSource }

func (o onlyWorkers) Workers() []master.WorkerInfo              { return o.f.Workers() }
func (o onlyWorkers) Pause(ctx context.Context, pid int) error  { return o.f.Pause(ctx, pid) }
func (o onlyWorkers) Resume(ctx context.Context, pid int) error { return o.f.Resume(ctx, pid) }
func (o onlyWorkers) Replace(pid int) error                     { return o.f.Replace(pid) }
func (o onlyWorkers) RollingRestart(ctx context.Context) error  { return o.f.RollingRestart(ctx) }

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestDashboard(t *testing.T) {
	_, url := serve(t, newFake(101), monitor.Options{})
	page := want(t, "GET", url+"/debug", 200, "<table id=\"workers\">")
	for _, asset := range []string{"/debug/static/app.js", "/debug/static/style.css"} {
		if !strings.Contains(page, asset) {
			t.Errorf("the page does not load %s", asset)
		}
		body := want(t, "GET", url+asset, 200, "")
		if len(body) < 500 {
			t.Errorf("%s is %d bytes", asset, len(body))
		}
		page += body
	}
	// Every asset is embedded: nothing is fetched from another host.
	for _, ext := range []string{"http://", "https://", "//cdn", "@import"} {
		if strings.Contains(page, ext) && !strings.Contains(page, "http://www.w3.org/2000/svg") {
			t.Errorf("the dashboard refers to %q", ext)
		}
	}
	want(t, "GET", url+"/debug/static/nope.js", 404, "")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/debug" {
		t.Fatalf("GET / = %d → %q; want 302 → /debug", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// sseReader reads server-sent events.
type sseReader struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
}

func openSSE(t *testing.T, url string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	return &sseReader{t: t, resp: resp, sc: sc}
}

// next returns the next event whose name is not in skip.
func (r *sseReader) next(skip ...string) (string, string) {
	r.t.Helper()
	var event, data string
	for r.sc.Scan() {
		l := r.sc.Text()
		switch {
		case strings.HasPrefix(l, "event: "):
			event = l[7:]
		case strings.HasPrefix(l, "data: "):
			data = l[6:]
		case l == "" && event != "":
			skipped := false
			for _, s := range skip {
				skipped = skipped || s == event
			}
			if !skipped {
				return event, data
			}
			event, data = "", ""
		}
	}
	r.t.Fatalf("event stream ended: %v", r.sc.Err())
	return "", ""
}

func TestEventStream(t *testing.T) {
	f := newFake(101)
	s, url := serve(t, f, monitor.Options{SampleInterval: 20 * time.Millisecond})
	r := openSSE(t, url+"/debug/events")
	ev, data := r.next()
	if ev != "snapshot" || !strings.Contains(data, `"pid":101`) {
		t.Fatalf("first event = %s %s; want a snapshot with worker 101", ev, data)
	}
	f.setState(101, master.Paused)
	for {
		_, data := r.next("lifecycle")
		if strings.Contains(data, `"state":"paused"`) {
			break
		}
	}
	s.HandleEvent(master.Event{Kind: master.EventPaused, Pid: 101})
	ev, data = r.next("snapshot")
	if ev != "lifecycle" || !strings.Contains(data, `"name":"worker-101-paused"`) {
		t.Fatalf("event = %s %s; want the lifecycle event", ev, data)
	}
}

func TestKeyFeed(t *testing.T) {
	f := newFake(101)
	f.caches = []monitor.CacheInfo{{Name: "users"}}
	_, url := serve(t, f, monitor.Options{})
	want(t, "GET", url+"/debug/api/caches/nope/changes", 404, "no such cache")
	r := openSSE(t, url+"/debug/api/caches/users/changes")
	if ev, _ := r.next(); ev != "ready" {
		t.Fatalf("first event %s; want ready", ev)
	}
	long := strings.Repeat("é", 300)
	if n := f.change(monitor.KeyChange{Cache: "users", Key: "u1", Op: "set", Value: long, Time: time.Now()}); n != 1 {
		t.Fatalf("%d watchers; want 1", n)
	}
	f.change(monitor.KeyChange{Cache: "users", Key: "u1", Op: "del", Time: time.Now()})
	var c monitor.KeyChange
	ev, data := r.next()
	if err := json.Unmarshal([]byte(data), &c); err != nil || ev != "change" || c.Key != "u1" || c.Op != "set" ||
		len(c.Value) > 260 || !strings.HasSuffix(c.Value, "…") {
		t.Fatalf("event %s %s (%v); want the set, value cut", ev, data, err)
	}
	ev, data = r.next()
	if ev != "change" || !strings.Contains(data, `"op":"del"`) {
		t.Fatalf("event %s %s; want the del", ev, data)
	}
}

func TestDeps(t *testing.T) {
	_, url := serve(t, newFake(), monitor.Options{})
	var d monitor.Deps
	getJSON(t, url+"/deps", &d)
	if d.Name != "github.com/cluster2/cluster2" || !strings.HasPrefix(d.Go, "go1.") || d.Dependencies == nil {
		t.Fatalf("deps = %+v", d)
	}
	// A test binary lists no dependencies: shape a real binary's listing.
	bi, err := debug.ParseBuildInfo("go\tgo1.26.8\npath\texample.com/app\nmod\texample.com/app\t(devel)\t\n" +
		"dep\tgithub.com/prometheus/client_golang\tv1.25.0\th1:abc=\n" +
		"dep\tgolang.org/x/sys\tv0.50.0\t\n=>\t../sys\t(devel)\t\n")
	if err != nil {
		t.Fatal(err)
	}
	d = monitor.DepsOf(bi)
	p := d.Dependencies["github.com/prometheus/client_golang"]
	x := d.Dependencies["golang.org/x/sys"]
	if d.Name != "example.com/app" || d.Version != "(devel)" || p.Version != "v1.25.0" || p.Sum != "h1:abc=" ||
		x.From != "../sys" || x.Replaced == nil {
		t.Fatalf("DepsOf = %+v", d)
	}
}

func TestStatus(t *testing.T) {
	f := newFake(101)
	f.statuses = map[string]map[int]any{"queue": {101: 3, os.Getpid(): "idle"}}
	f.statuses["status.os"] = map[int]any{101: map[string]any{"Pid": 101, "RSS": 1}} // another shape: not shown
	_, url := serve(t, f, monitor.Options{})
	var st map[string]map[string]any
	getJSON(t, url+"/status", &st)
	if st["queue"]["101"] != 3.0 || st["ecv"]["up"] != false {
		t.Fatalf("status = %v", st)
	}
	// Each heartbeat once, in the one JSON shape (worker.Heartbeat's).
	if _, ok := st["os"]; ok {
		t.Fatalf("status has both os and status.os: %v", st)
	}
	hb, _ := st["status.os"]["101"].(map[string]any)
	if hb["rssBytes"] != float64(50<<20) || hb["uptimeSeconds"] != 60.0 || hb["cycleSeconds"] != 5.0 ||
		hb["gcPauseMs"] != 1.0 || hb["pid"] != 101.0 || hb["RSS"] != nil || hb["Uptime"] != nil {
		t.Fatalf("status.os[101] = %v; want worker.Heartbeat's camelCase names, seconds", hb)
	}
	_, url2 := serve(t, onlyWorkers{f}, monitor.Options{})
	want(t, "GET", url2+"/status", 200, `"status.os"`)
}

func TestMetrics(t *testing.T) {
	f := newFake(101, 102)
	f.workers[0].HungRequests, f.workers[0].RequestLimit = 3, 1234
	f.caches = []monitor.CacheInfo{{Name: "users", Hits: 9, Misses: 3, Evictions: 5, Entries: 2, Bytes: 64, CounterOps: 4, CASFailures: 3, TagInvalidations: 2, Clears: 1,
		StaleServes: 5, FailSafeServes: 6, Refreshes: 7, NegativeHits: 8}}
	f.metrics = []monitor.Metric{{Name: "cluster2_wal_bytes", Help: "WAL size.", Value: 4096},
		{Name: "cluster2_ring_records_total", Help: "Records.", Counter: true, Labels: map[string]string{"ring": "w1"}, Value: 7}}
	s, url := serve(t, f, monitor.Options{})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	body := want(t, "GET", url+"/metrics", 200, "")
	for _, line := range []string{
		`cluster2_workers{state="active"} 2`,
		`cluster2_worker_resident_memory_bytes{pid="101",slot="1"} 5.24288e+07`,
		`cluster2_worker_requests_total{pid="102",slot="2"} 41`,
		`cluster2_worker_accepts_total{pid="102",slot="2"} 101`,
		`# TYPE cluster2_worker_accepts_total counter`,
		`cluster2_worker_connections_total{pid="101",slot="1"} 100`,
		`cluster2_worker_cpu_percent{pid="101",slot="1"} 12.5`,
		`cluster2_worker_hung_requests_total{pid="101",slot="1"} 3`,
		`cluster2_worker_hung_requests_total{pid="102",slot="2"} 0`,
		`cluster2_worker_request_limit{pid="101",slot="1"} 1234`,
		`cluster2_ecv_up 1`,
		`cluster2_cache_hits_total{cache="users"} 9`,
		`cluster2_cache_hit_ratio{cache="users"} 0.75`,
		`cluster2_cache_evictions_total{cache="users"} 5`,
		`cluster2_cache_bytes{cache="users"} 64`,
		`cluster2_cache_counter_ops_total{cache="users"} 4`,
		`cluster2_cache_cas_failures_total{cache="users"} 3`,
		`cluster2_cache_tag_invalidations_total{cache="users"} 2`,
		`cluster2_cache_clears_total{cache="users"} 1`,
		`cluster2_cache_stale_serves_total{cache="users"} 5`,
		`cluster2_cache_failsafe_serves_total{cache="users"} 6`,
		`cluster2_cache_refreshes_total{cache="users"} 7`,
		`cluster2_cache_negative_hits_total{cache="users"} 8`,
		`cluster2_wal_bytes 4096`,
		`cluster2_ring_records_total{ring="w1"} 7`,
		`go_goroutines `,
		`# TYPE cluster2_worker_requests_total counter`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(body, `cluster2_worker_request_limit{pid="102"`) {
		t.Error("/metrics has a request limit for a worker without one")
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestAgentCheck(t *testing.T) {
	for _, c := range []struct {
		st       monitor.ECVState
		expected int
		line     string
	}{
		{monitor.ECVState{Up: true, Active: 4}, 4, "ready up 100%\n"},
		{monitor.ECVState{Up: true, Active: 1}, 4, "ready up 25%\n"},
		{monitor.ECVState{Up: true, Active: 1}, 0, "ready up 100%\n"},
		{monitor.ECVState{MarkedDown: true, Reason: "marked down"}, 4, "drain\n"},
		{monitor.ECVState{Stopping: true, MarkedDown: true, Reason: "stopping"}, 4, "maint\n"},
		{monitor.ECVState{Reason: "warming up"}, 4, "down\n"},
	} {
		if got := monitor.AgentLine(c.st, c.expected); got != c.line {
			t.Errorf("AgentLine(%+v, %d) = %q; want %q", c.st, c.expected, got, c.line)
		}
	}
	f := newFake(101, 102)
	s, err := monitor.New(f, monitor.Options{Logger: quiet, Addr: "127.0.0.1:0", AgentAddr: "127.0.0.1:0", ExpectedWorkers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	agent := func() string {
		c, err := net.Dial("tcp", s.AgentAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := agent(); got != "down\n" {
		t.Fatalf("agent before warm-up = %q", got)
	}
	s.HandleEvent(master.Event{Kind: master.EventUp})
	if got := agent(); got != "ready up 50%\n" {
		t.Fatalf("agent = %q; want ready up 50%%", got)
	}
	s.ECV().MarkDown()
	if got := agent(); got != "drain\n" {
		t.Fatalf("agent marked down = %q", got)
	}
}

func TestStartClose(t *testing.T) {
	s, err := monitor.New(newFake(), monitor.Options{Logger: quiet, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Fatal("Addr before Start is not nil")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, monitor.ErrStarted) {
		t.Fatalf("second Start = %v; want ErrStarted", err)
	}
	want(t, "GET", "http://"+s.Addr().String()+"/livez", 200, "ok")
	busy, err := monitor.New(newFake(), monitor.Options{Logger: quiet, Addr: s.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a busy address = %v", err)
	}
	busy.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := s.Start(); !errors.Is(err, monitor.ErrClosed) {
		t.Fatalf("Start after Close = %v; want ErrClosed", err)
	}
}

var quiet = slog.New(slog.DiscardHandler)
