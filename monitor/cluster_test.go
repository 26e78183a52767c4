package monitor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// The tests in this file run a real cluster: the test binary re-executed as
// a master (child "cluster"), which re-executes it as workers, with the
// monitor wired by cluster2.Listen.

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"cluster": childCluster, "agent-emfile": childAgentEMFILE})
}

// Scenario variables of the "cluster" child (the workers inherit them).
const (
	envWorkers   = "T_WORKERS"   // number of workers
	envMonitor   = "T_MONITOR"   // Config.MonitorAddr
	envWarmHang  = "T_WARMHANG"  // WarmUp blocks while this file exists
	envInFlight  = "T_INFLIGHT"  // /slow creates this file when it starts
	envHeartbeat = "T_HEARTBEAT" // Config.HeartbeatInterval
	envToken     = "T_TOKEN"     // Config.Monitor.Token
)

func exists(path string) bool {
	_, err := os.Stat(path)
	return path != "" && err == nil
}

// childCluster is main of the test cluster, in the master and the workers.
func childCluster() {
	workers, _ := strconv.Atoi(os.Getenv(envWorkers))
	hb, err := time.ParseDuration(os.Getenv(envHeartbeat))
	if err != nil {
		hb = 200 * time.Millisecond
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "pid %d\n", os.Getpid()) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		if f := os.Getenv(envInFlight); f != "" {
			os.WriteFile(f, nil, 0o600)
		}
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "pid %d\n", os.Getpid())
	})
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: workers, Addr: "127.0.0.1:0", MonitorAddr: os.Getenv(envMonitor), Handler: mux,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Monitor:           cluster2.MonitorConfig{Token: os.Getenv(envToken)},
		HeartbeatInterval: hb, NannyTolerance: -1, StopTimeout: 20 * time.Second, ReplaceTimeout: 20 * time.Second,
		WarmUp: func(ctx context.Context, addr string) error {
			for exists(os.Getenv(envWarmHang)) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			return nil
		},
	})
	if err != nil {
		fmt.Printf("LISTEN-ERROR %v\n", err)
		os.Exit(3)
	}
	if c.IsMaster() {
		fmt.Printf("READY %s %s\n", c.Addr(), c.MonitorAddr())
	}
	c.Wait()
	if c.IsMaster() {
		fmt.Printf("STOPPED\n")
	}
}

// cluster is a running test cluster.
type cluster struct {
	t     *testing.T
	cmd   *exec.Cmd
	app   string // http://addr of the shared socket, once READY
	mon   string // http://addr of the monitor
	ready chan struct{}
	dead  chan struct{}
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

// startCluster starts the master; it does not wait for READY (see
// waitReady): the monitor answers before the workers are warm.
func startCluster(t *testing.T, workers int, env ...string) *cluster {
	t.Helper()
	mon := freeAddr(t)
	env = append(env, envWorkers+"="+strconv.Itoa(workers), envMonitor+"="+mon)
	cmd := xtesting.Command(t, "cluster", nil, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	xtesting.Start(t, cmd)
	c := &cluster{t: t, cmd: cmd, mon: "http://" + mon, ready: make(chan struct{}), dead: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				c.app = "http://" + f[1]
				if "http://"+f[2] != c.mon {
					t.Errorf("MonitorAddr() = %s; want %s", f[2], mon)
				}
				close(c.ready)
			}
		}
		cmd.Wait()
		close(c.dead)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-c.dead
	})
	return c
}

func (c *cluster) waitReady() {
	c.t.Helper()
	select {
	case <-c.ready:
	case <-c.dead:
		c.t.Fatal("the master exited before READY")
	case <-time.After(60 * time.Second):
		c.t.Fatal("no READY after 60 s")
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

func (c *cluster) workers() []apiWorker {
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
	c := startCluster(t, 2, envWarmHang+"="+hang, envInFlight+"="+inflight)

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
	if !xtesting.Eventually(10*time.Second, func() bool { return exists(inflight) }) {
		t.Fatal("the slow request never started")
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
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
	case <-c.dead:
	case <-time.After(30 * time.Second):
		t.Fatal("the master did not exit after SIGTERM")
	}
}

// TestClusterRoutes reaches the real workers through the monitor: actions,
// per-worker profiles (a unix socket in a private directory), /metrics
// with their pids, /status, /deps.
func TestClusterRoutes(t *testing.T) {
	c := startCluster(t, 2)
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
	c1 := startCluster(t, 1, env)
	c1.waitReady()
	mine, _ := filepath.Glob(filepath.Join(tmp, "cluster2-pprof-"+strconv.Itoa(c1.cmd.Process.Pid)+"-*"))
	if len(mine) != 1 {
		t.Fatalf("profile dirs of master %d: %v; want 1", c1.cmd.Process.Pid, mine)
	}
	c1.cmd.Process.Signal(syscall.SIGKILL)
	<-c1.dead
	if !exists(mine[0]) {
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
	c2 := startCluster(t, 1, env)
	c2.waitReady()
	for _, gone := range []string{mine[0], deadDir} {
		if exists(gone) {
			t.Errorf("%s still there after the next start", gone)
		}
	}
	for _, kept := range []string{live, filepath.Join(live, "f"), link, filepath.Join(keep, "f")} {
		if _, err := os.Lstat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
	if d, _ := filepath.Glob(filepath.Join(tmp, "cluster2-pprof-"+strconv.Itoa(c2.cmd.Process.Pid)+"-*")); len(d) != 1 {
		t.Errorf("the new master's profile dirs: %v; want 1", d)
	}
}
