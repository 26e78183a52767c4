package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"cachecluster": childCacheCluster})
}

// Scenario of the "cachecluster" child (inherited by its workers).
const (
	envData = "IT_DATA" // Cache.DataDir ("" = no persistence)
	envMode = "IT_MODE" // Cache.Mode
	envDur  = "IT_DUR"  // the cache's Durability
)

type answer struct {
	Pid   int    `json:"pid"`
	Value string `json:"value"`
	OK    bool   `json:"ok"`
	Err   string `json:"err,omitempty"`
}

// childCacheCluster is a cluster whose two workers serve the cache "it":
// GET /get?k= (with a loader naming the loading pid), GET /set?k=&v=,
// GET /del?k=. The master serves clustertest's control routes once Listen
// returned.
func childCacheCluster() {
	dur, _ := strconv.Atoi(os.Getenv(envDur))
	opts := cache.Options{Persist: os.Getenv(envData) != "", Durability: cache.Durability(dur)}
	reply := func(w http.ResponseWriter, a answer, err error) {
		a.Pid = os.Getpid()
		if err != nil {
			a.Err = err.Error()
			w.WriteHeader(500)
		}
		json.NewEncoder(w).Encode(a)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		c, err := cache.Use("it", opts)
		if err != nil {
			reply(w, answer{}, err)
			return
		}
		v, err := c.Get(r.Context(), r.URL.Query().Get("k"), func(context.Context, string) ([]byte, error) {
			time.Sleep(100 * time.Millisecond) // long enough for concurrent misses to meet
			return []byte("loaded-by-" + strconv.Itoa(os.Getpid())), nil
		})
		reply(w, answer{Value: string(v), OK: err == nil}, err)
	})
	mux.HandleFunc("/peek", func(w http.ResponseWriter, r *http.Request) {
		c, err := cache.Use("it", opts)
		if err != nil {
			reply(w, answer{}, err)
			return
		}
		v, ok, err := c.GetInto(nil, r.URL.Query().Get("k"))
		reply(w, answer{Value: string(v), OK: ok}, err)
	})
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		c, err := cache.Use("it", opts)
		if err != nil {
			reply(w, answer{}, err)
			return
		}
		ok, err := c.Set(r.Context(), r.URL.Query().Get("k"), []byte(r.URL.Query().Get("v")), cache.SetOptions{})
		reply(w, answer{OK: ok}, err)
	})
	mux.HandleFunc("/del", func(w http.ResponseWriter, r *http.Request) {
		c, err := cache.Use("it", opts)
		if err != nil {
			reply(w, answer{}, err)
			return
		}
		_, ok, err := c.Del(r.Context(), r.URL.Query().Get("k"))
		reply(w, answer{OK: ok}, err)
	})
	cfg := cluster2.Config{
		Workers: 2, Addr: "127.0.0.1:0", MonitorAddr: "127.0.0.1:0", Handler: mux,
		HeartbeatInterval: 500 * time.Millisecond, StopTimeout: 5 * time.Second, ReplaceTimeout: 10 * time.Second,
		ArenaSize: 32 << 20,
		Cache:     cluster2.CacheConfig{Enabled: true, Mode: cluster2.CacheMode(os.Getenv(envMode)), DataDir: os.Getenv(envData)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cl, err := cluster2.Listen(ctx, cfg)
	cancel()
	if err != nil {
		fmt.Println("LISTEN-ERROR", err)
		os.Exit(1)
	}
	if cl.IsMaster() {
		clustertest.Serve(cl, clustertest.ControlMux(cl))
		return
	}
	cl.Wait()
}

type testCluster struct{ *clustertest.Process }

func startCluster(t *testing.T, env ...string) *testCluster {
	t.Helper()
	return &testCluster{clustertest.Start(t, "cachecluster", env...)}
}

func (tc *testCluster) call(path string) (answer, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("http://" + tc.Addr + path)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("%s: status %d: %q", path, resp.StatusCode, b)
	}
	if a.Err != "" {
		return a, fmt.Errorf("%s: %s", path, a.Err)
	}
	return a, nil
}

// TestCacheAcrossWorkers: a value set through one worker is read by the
// other, and concurrent misses of one key through both workers run the
// loader once.
func TestCacheAcrossWorkers(t *testing.T) {
	tc := startCluster(t)
	if a, err := tc.call("/set?k=shared&v=hello"); err != nil || !a.OK {
		t.Fatalf("set: %+v, %v", a, err)
	}
	// The kernel hands each new connection to whichever worker accepts
	// first: ask until both answered (bounded).
	seen := map[int]bool{}
	for deadline := time.Now().Add(10 * time.Second); len(seen) < 2 && time.Now().Before(deadline); {
		a, err := tc.call("/peek?k=shared")
		if err != nil || !a.OK || a.Value != "hello" {
			t.Fatalf("peek through pid %d: %+v, %v", a.Pid, a, err)
		}
		seen[a.Pid] = true
	}
	if len(seen) < 2 {
		t.Fatalf("10 s of requests reached only %v", seen)
	}
	var wg sync.WaitGroup
	values := make(chan answer, 16)
	for range 16 {
		wg.Go(func() {
			a, err := tc.call("/get?k=once")
			if err != nil {
				t.Error(err)
			}
			values <- a
		})
	}
	wg.Wait()
	close(values)
	distinct, servers := map[string]bool{}, map[int]bool{}
	for a := range values {
		distinct[a.Value] = true
		servers[a.Pid] = true
	}
	if len(distinct) != 1 {
		t.Fatalf("16 concurrent misses through %d workers got %v: the loader ran more than once", len(servers), distinct)
	}
	t.Logf("one loader for 16 misses served by %d workers: %v", len(servers), distinct)
}

// TestPersistentCacheSurvivesKill9 sets keys with Always (each answer is an
// acknowledgement), kills the whole cluster with SIGKILL, starts it again on
// the same data directory and reads every acknowledged key back; deleted keys
// stay deleted. In standalone mode the cache-manager process is also killed
// in the middle and must be restarted by the master without losing anything.
func TestPersistentCacheSurvivesKill9(t *testing.T) {
	for _, mode := range []cluster2.CacheMode{cluster2.CacheMaster, cluster2.CacheStandalone} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			env := []string{envData + "=" + dir, envMode + "=" + string(mode), envDur + "=" + strconv.Itoa(int(cache.Always))}
			tc := startCluster(t, env...)
			const n = 200
			for i := range n {
				if i == n/2 && mode == cluster2.CacheStandalone {
					pid := managerPid(t, tc)
					syscall.Kill(pid, syscall.SIGKILL)
					t.Logf("killed the cache manager %d after %d acknowledged sets", pid, i)
				}
				a, err := tc.call(fmt.Sprintf("/set?k=k%d&v=v%d", i, i))
				if err != nil || !a.OK {
					t.Fatalf("set k%d: %+v, %v", i, a, err)
				}
				if i%10 == 9 {
					if a, err := tc.call(fmt.Sprintf("/del?k=k%d", i-5)); err != nil || !a.OK {
						t.Fatalf("del k%d: %+v, %v", i-5, a, err)
					}
				}
			}
			tc.Kill()
			tc2 := startCluster(t, env...)
			for i := range n {
				a, err := tc2.call(fmt.Sprintf("/peek?k=k%d", i))
				if err != nil {
					t.Fatal(err)
				}
				deleted := i%10 == 4
				if deleted && a.OK {
					t.Fatalf("deleted k%d came back as %q", i, a.Value)
				}
				if !deleted && (!a.OK || a.Value != fmt.Sprint("v", i)) {
					t.Fatalf("acknowledged k%d = %q, %v after kill -9 and restart", i, a.Value, a.OK)
				}
			}
		})
	}
}

// TestPersistentCacheSurvivesUpgrades sets keys with Always while the
// master upgrades itself in place twice (SIGUSR2: the test binary execs
// itself), in both cache modes: the log writer in the master resumes in each
// next image, or the standalone cache manager is adopted as it runs. Every
// set is acknowledged, every key is a hit after the upgrades, and after a
// kill -9 of the whole cluster and a restart on the same data directory
// every acknowledged key is read back from the log.
func TestPersistentCacheSurvivesUpgrades(t *testing.T) {
	for _, mode := range []cluster2.CacheMode{cluster2.CacheMaster, cluster2.CacheStandalone} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			env := []string{envData + "=" + dir, envMode + "=" + string(mode), envDur + "=" + strconv.Itoa(int(cache.Always))}
			tc := startCluster(t, env...)
			manager := 0
			if mode == cluster2.CacheStandalone {
				manager = managerPid(t, tc)
			}
			const n = 150
			var since time.Time
			for i := range n {
				if i == n/3 || i == 2*n/3 {
					if i == 2*n/3 {
						if u, err := tc.WaitUpgrade(since, 60*time.Second); err != nil || u.State != "done" {
							t.Fatalf("the first upgrade: %+v, %v", u, err)
						}
					}
					since = time.Now()
					tc.Signal(syscall.SIGUSR2)
				}
				a, err := tc.call(fmt.Sprintf("/set?k=k%d&v=v%d", i, i))
				if err != nil || !a.OK {
					t.Fatalf("set k%d: %+v, %v", i, a, err)
				}
			}
			if u, err := tc.WaitUpgrade(since, 60*time.Second); err != nil || u.State != "done" {
				t.Fatalf("the second upgrade: %+v, %v", u, err)
			}
			if manager != 0 && tc.ManagerPid() != manager {
				t.Errorf("cache manager %d after the upgrades; want the same %d (adopted, not restarted)", tc.ManagerPid(), manager)
			}
			for i := range n {
				if a, err := tc.call(fmt.Sprintf("/peek?k=k%d", i)); err != nil || !a.OK || a.Value != fmt.Sprint("v", i) {
					t.Fatalf("k%d after the upgrades: %+v, %v", i, a, err)
				}
			}
			tc.Kill()
			tc2 := startCluster(t, env...)
			for i := range n {
				if a, err := tc2.call(fmt.Sprintf("/peek?k=k%d", i)); err != nil || !a.OK || a.Value != fmt.Sprint("v", i) {
					t.Fatalf("acknowledged k%d = %+v, %v after the upgrades, kill -9 and a restart", i, a, err)
				}
			}
		})
	}
}

// managerPid waits, up to 10 s, for the cache-manager process of tc.
func managerPid(t *testing.T, tc *testCluster) int {
	t.Helper()
	var pid int
	if !xtesting.Eventually(10*time.Second, func() bool {
		if pid = tc.ManagerPid(); pid == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		return pid > 0
	}) {
		t.Fatal("no cache-manager process found")
	}
	return pid
}

// TestMonitorShowsCacheAndLog: the master's monitor shows the real cache (its
// entries) and the write-ahead log's figures of a running cluster.
func TestMonitorShowsCacheAndLog(t *testing.T) {
	dir := t.TempDir()
	tc := startCluster(t, envData+"="+dir, envMode+"="+string(cluster2.CacheMaster), envDur+"="+strconv.Itoa(int(cache.Always)))
	for i := range 20 {
		if _, err := tc.call(fmt.Sprintf("/set?k=m%d&v=x", i)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + tc.Mon + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var caches []map[string]any
	if err := json.Unmarshal([]byte(get("/debug/api/caches")), &caches); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range caches {
		if c["name"] == "it" {
			found = true
			t.Logf("cache view: %v", c)
		}
	}
	if !found {
		t.Fatalf("/debug/api/caches = %v; want the cache \"it\"", caches)
	}
	metrics := get("/metrics")
	for _, want := range []string{"cluster2_wal_attached 1", "cluster2_wal_records_total", "cluster2_wal_fsyncs_total",
		"cluster2_ring_frames_received_total"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "cluster2_wal_records_total 0\n") {
		t.Fatal("/metrics: the log recorded nothing after 20 Always sets")
	}
	var statuses map[string]map[string]any
	if err := json.Unmarshal([]byte(get("/status")), &statuses); err != nil {
		t.Fatalf("/status: %v", err)
	}
	if n := len(statuses["status.os"]); n != 2 {
		t.Fatalf("/status has status.os from %d processes; want the 2 workers: %v", n, statuses)
	}
	if strings.Contains(metrics, "cluster2_ring_frames_received_total 0\n") {
		t.Fatal("/metrics: the master read no frame from the workers' rings (the workers emit lifecycle events)")
	}
}
