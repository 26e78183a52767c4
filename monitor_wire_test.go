package cluster2_test

// The monitor as cluster2.Listen wires it, with real processes: the plain
// test cluster (clustertest.Child) with its monitor on a known address,
// watched through that monitor while it starts, serves and stops. The
// monitor's own tests (package monitor) use a fake source.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// monCluster is a test cluster watched through its monitor.
type monCluster struct {
	*clustertest.Process
	t   *testing.T
	app string // http://addr of the shared socket, once waitReady returned
	mon string // http://addr of the monitor
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startMonitored starts the master with workers workers and its monitor on
// a free address; it does not wait for READY (see waitReady): the monitor
// answers before the workers are warm.
func startMonitored(t *testing.T, workers int, env ...string) *monCluster {
	t.Helper()
	mon := freeAddr(t)
	env = append(env, clustertest.EnvWorkers+"="+strconv.Itoa(workers), clustertest.EnvMonitor+"="+mon,
		clustertest.EnvStopTO+"=20s", clustertest.EnvReplaceTO+"=20s")
	return &monCluster{Process: clustertest.Spec{Child: "cluster", Env: env}.Launch(t), t: t, mon: "http://" + mon}
}

// waitReady waits until Listen returned in the master, which must say its
// monitor is where it was asked to be.
func (c *monCluster) waitReady() {
	c.t.Helper()
	c.WaitReady()
	c.app = "http://" + c.Addr
	if "http://"+c.Mon != c.mon {
		c.t.Errorf("MonitorAddr() = %s; want %s", c.Mon, c.mon)
	}
}

// get returns the status and body of GET url, or 0 when the request fails.
func get(url string) (int, string) {
	return request("GET", url)
}

func request(method, url string) (int, string) {
	req, _ := http.NewRequest(method, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var sb strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&sb)
	return resp.StatusCode, sb.String()
}

// apiWorker is a worker as /debug/api/workers shows it.
type apiWorker struct {
	Pid   int    `json:"pid"`
	State string `json:"state"`
}

func (c *monCluster) workers() []apiWorker {
	c.t.Helper()
	code, body := get(c.mon + "/debug/api/workers")
	var ws []apiWorker
	if code != 200 || json.Unmarshal([]byte(body), &ws) != nil {
		c.t.Fatalf("GET /debug/api/workers = %d %q", code, body)
	}
	return ws
}

// TestClusterECV is the ECV sequence with real processes: 503 before the
// workers are warm, 200 after, 503 after markDown, 200 after markUp, 503 as
// soon as SIGTERM arrives (while a request is still being served), and
// /livez 200 throughout.
func TestClusterECV(t *testing.T) {
	hang := t.TempDir() + "/hang"
	inflight := t.TempDir() + "/inflight"
	os.WriteFile(hang, nil, 0o600)
	c := startMonitored(t, 2, clustertest.EnvWarmHang+"="+hang, clustertest.EnvInFlight+"="+inflight)

	if !xtesting.Eventually(30*time.Second, func() bool { code, _ := get(c.mon + "/livez"); return code == 200 }) {
		t.Fatal("/livez never answered 200 while the workers warm up")
	}
	if code, body := get(c.mon + "/ecv"); code != 503 || !strings.Contains(body, "warming up") {
		t.Fatalf("ECV while warming = %d %q; want 503 warming up", code, body)
	}
	if !xtesting.Eventually(30*time.Second, func() bool { return len(c.workers()) == 2 }) {
		t.Fatalf("workers while warming = %+v; want 2", c.workers())
	}
	if code, body := get(c.mon + "/ecv"); code != 503 {
		t.Fatalf("ECV with the workers still warming = %d %q; want 503", code, body)
	}

	os.Remove(hang)
	c.waitReady()
	if code, body := get(c.mon + "/ecv"); code != 200 || body != "ECV UP\n" {
		t.Fatalf("ECV after warm-up = %d %q; want 200 ECV UP", code, body)
	}
	if code, body := request("POST", c.mon+"/ecv/markDown"); code != 200 {
		t.Fatalf("POST markDown = %d %q", code, body)
	}
	if code, body := get(c.mon + "/ecv"); code != 503 || !strings.HasPrefix(body, "ECV DISABLED") {
		t.Fatalf("ECV after markDown = %d %q; want 503 ECV DISABLED", code, body)
	}
	if code, _ := get(c.app + "/"); code != 200 {
		t.Fatalf("the app marked down = %d; want it still serving", code)
	}
	if code, body := request("POST", c.mon+"/ecv/markUp"); code != 200 {
		t.Fatalf("POST markUp = %d %q", code, body)
	}
	if code, body := get(c.mon + "/ecv"); code != 200 {
		t.Fatalf("ECV after markUp = %d %q; want 200", code, body)
	}

	// A request in flight keeps a worker draining after SIGTERM.
	slow := make(chan int, 1)
	go func() { code, _ := get(c.app + "/slow?ms=3000"); slow <- code }()
	if !xtesting.Eventually(10*time.Second, func() bool { return clustertest.Exists(inflight) }) {
		t.Fatal("the slow request never started")
	}
	if err := c.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	if !xtesting.Eventually(5*time.Second, func() bool { code, body = get(c.mon + "/ecv"); return code != 200 }) {
		t.Fatal("ECV still 200 5 s after SIGTERM")
	}
	select {
	case <-slow:
		t.Fatal("the slow request finished before the ECV went down")
	default:
	}
	if code != 503 || !strings.Contains(body, "stopping") {
		t.Fatalf("ECV after SIGTERM = %d %q; want 503 stopping", code, body)
	}
	if code, _ := get(c.mon + "/livez"); code != 200 {
		t.Fatalf("/livez during the stop = %d; want 200", code)
	}
	if code := <-slow; code != 200 {
		t.Fatalf("the slow request = %d; want 200 (drained, not cut)", code)
	}
	select {
	case <-c.Dead():
	case <-time.After(30 * time.Second):
		t.Fatal("the master did not exit after SIGTERM")
	}
}

// TestClusterRoutes reaches the real workers through the monitor: actions,
// per-worker profiles (a unix socket in a private directory, up before the
// worker listens), /metrics
// with their pids, /status, /deps.
func TestClusterRoutes(t *testing.T) {
	// Each worker's profile socket must be up before it listens (its warm-up
	// checks): the monitor may ask for it as soon as the cluster is up.
	c := startMonitored(t, 2, clustertest.EnvProfileUp+"=1")
	c.waitReady()
	ws := c.workers()
	if len(ws) != 2 || ws[0].State != "active" {
		t.Fatalf("workers = %+v", ws)
	}
	pid := strconv.Itoa(ws[0].Pid)

	prof := c.mon + "/debug/workers/" + pid + "/pprof/"
	if code, body := get(prof + "heap"); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("heap of worker %s = %d %q", pid, code, body[:min(len(body), 80)])
	}
	if code, body := get(prof + "goroutine?debug=2"); code != 200 || !strings.Contains(body, "goroutine ") {
		t.Fatalf("goroutines of worker %s = %d %q", pid, code, body[:min(len(body), 80)])
	}
	if code, body := get(prof + "profile?seconds=0.3"); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("cpu profile of worker %s = %d", pid, code)
	}
	if code, body := get(prof + "trace?seconds=0.2"); code != 200 || !strings.HasPrefix(body, "go 1.") {
		t.Fatalf("trace of worker %s = %d", pid, code)
	}

	if code, body := request("POST", c.mon+"/debug/api/workers/"+pid+"/pause"); code != 200 {
		t.Fatalf("pause = %d %q", code, body)
	}
	if ws := c.workers(); ws[0].State != "paused" {
		t.Fatalf("after pause: %+v", ws)
	}
	if code, body := get(c.mon + "/ecv"); code != 200 {
		t.Fatalf("ECV with one of two workers paused = %d %q; want 200 (MinActive 1)", code, body)
	}
	if code, body := request("POST", c.mon+"/debug/api/workers/"+pid+"/resume"); code != 200 {
		t.Fatalf("resume = %d %q", code, body)
	}

	if !xtesting.Eventually(10*time.Second, func() bool {
		_, body := get(c.mon + "/metrics")
		return strings.Contains(body, `cluster2_worker_resident_memory_bytes{pid="`+pid+`"`) &&
			strings.Contains(body, `cluster2_workers{state="active"} 2`) && strings.Contains(body, "cluster2_arena_bytes")
	}) {
		_, body := get(c.mon + "/metrics")
		t.Fatalf("/metrics lacks worker %s:\n%s", pid, body)
	}
	code, body := get(c.mon + "/status")
	var st map[string]map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/status = %d %q", code, body)
	}
	// Each heartbeat once, in worker.Heartbeat's JSON form.
	hb, _ := st["status.os"][pid].(map[string]any)
	if _, two := st["os"]; two || len(st["status.os"]) != 2 || hb["pid"] != float64(ws[0].Pid) ||
		hb["rssBytes"] == nil || hb["cycleSeconds"] == nil || hb["RSS"] != nil {
		t.Fatalf("/status: want status.os only, the 2 workers' heartbeats in camelCase: %s", body)
	}
	if code, body := get(c.mon + "/deps"); code != 200 || !strings.Contains(body, `"name": "github.com/cluster2/cluster2"`) {
		t.Fatalf("/deps = %d %q", code, body)
	}

	if code, body := request("POST", c.mon+"/debug/api/workers/"+pid+"/replace"); code != 200 {
		t.Fatalf("replace = %d %q", code, body)
	}
	if !xtesting.Eventually(30*time.Second, func() bool {
		ws := c.workers()
		return len(ws) == 2 && ws[0].Pid != ws[1].Pid && strconv.Itoa(ws[0].Pid) != pid && strconv.Itoa(ws[1].Pid) != pid
	}) {
		t.Fatalf("worker %s not replaced: %+v", pid, c.workers())
	}
	if code, _ := get(prof + "heap"); code != 404 {
		t.Fatalf("profiles of the replaced worker = %d; want 404", code)
	}
}

// Item 6 of issue 13: a master killed with SIGKILL leaves its profiling
// directory; the next start removes what dead masters left, never a live
// process's directory, and does not follow a symlink.
func TestClusterKill9ProfileDirRemovedAtNextStart(t *testing.T) {
	tmp := t.TempDir()
	env := "TMPDIR=" + tmp
	c1 := startMonitored(t, 1, env)
	c1.waitReady()
	mine, _ := filepath.Glob(filepath.Join(tmp, "cluster2-pprof-"+strconv.Itoa(c1.Pid())+"-*"))
	if len(mine) != 1 {
		t.Fatalf("profile dirs of master %d: %v; want 1", c1.Pid(), mine)
	}
	c1.Cmd.Process.Signal(syscall.SIGKILL)
	<-c1.Dead()
	if !clustertest.Exists(mine[0]) {
		t.Fatalf("%s is gone after kill -9: nothing to test", mine[0])
	}
	// A live process's dir (a sleep), a dead pid's dir, and a symlink named
	// like a dead pid's dir pointing at a directory to keep.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(tmp, fmt.Sprintf("cluster2-pprof-%d-live", sleep.Process.Pid))
	deadDir := filepath.Join(tmp, fmt.Sprintf("cluster2-pprof-%d-dead", dead.Process.Pid))
	keep := filepath.Join(tmp, "keep")
	link := filepath.Join(tmp, fmt.Sprintf("cluster2-pprof-%d-link", dead.Process.Pid))
	for _, d := range []string{live, deadDir, keep} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "f"), nil, 0o600)
	}
	if err := os.Symlink(keep, link); err != nil {
		t.Fatal(err)
	}
	c2 := startMonitored(t, 1, env)
	c2.waitReady()
	for _, gone := range []string{mine[0], deadDir} {
		if clustertest.Exists(gone) {
			t.Errorf("%s still there after the next start", gone)
		}
	}
	for _, kept := range []string{live, filepath.Join(live, "f"), link, filepath.Join(keep, "f")} {
		if _, err := os.Lstat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
	if d, _ := filepath.Glob(filepath.Join(tmp, "cluster2-pprof-"+strconv.Itoa(c2.Pid())+"-*")); len(d) != 1 {
		t.Errorf("the new master's profile dirs: %v; want 1", d)
	}
}

// Each process's build, from a real cluster: /status "build" has the
// master's full build (Config.Version, the layout) under its pid and each
// worker's as the worker stored it in its control block; /metrics has
// cluster2_build_info for the master and every worker.
func TestClusterBuildInfo(t *testing.T) {
	c := startMonitored(t, 2, clustertest.EnvVersion+"=v7.1")
	c.waitReady()
	ws := c.workers()
	if len(ws) != 2 {
		t.Fatalf("workers = %+v", ws)
	}
	master := strconv.Itoa(c.Cmd.Process.Pid)
	code, body := get(c.mon + "/status")
	var st struct {
		Build map[string]struct {
			Version  string `json:"version"`
			Revision string `json:"revision"`
			Go       string `json:"go"`
			Layout   *cluster2.Layout
		} `json:"build"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("/status = %d %q", code, body)
	}
	if m := st.Build[master]; m.Version != "v7.1" || m.Go != runtime.Version() || m.Layout == nil || *m.Layout != cluster2.ThisLayout() {
		t.Fatalf("/status build of the master %s = %+v; want v7.1, %s, this layout: %s", master, m, runtime.Version(), body)
	}
	for _, w := range ws {
		if b := st.Build[strconv.Itoa(w.Pid)]; b.Version != "v7.1" || b.Go != runtime.Version() || b.Layout != nil {
			t.Fatalf("/status build of worker %d = %+v; want v7.1, %s (from its control block): %s", w.Pid, b, runtime.Version(), body)
		}
	}
	_, body = get(c.mon + "/metrics")
	rev := st.Build[master].Revision[:min(12, len(st.Build[master].Revision))] // "" unless go test stamps one
	line := func(pid, role, slot string) string {
		return `cluster2_build_info{goversion="` + runtime.Version() + `",pid="` + pid + `",revision="` + rev + `",role="` + role +
			`",slot="` + slot + `",version="v7.1"} 1`
	}
	want := []string{line(master, "master", "0")}
	for _, w := range c.Workers() {
		want = append(want, line(strconv.Itoa(w.Pid), "worker", strconv.Itoa(w.Slot)))
	}
	for _, line := range want {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %s:\n%s", line, body)
		}
	}
}
