package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/redistest"
)

// value is GET /cache/key's value on the demo at addr.
func value(t *testing.T, addr, key string) string {
	t.Helper()
	v, _ := do(t, "GET", "http://"+addr+"/cache/"+key, "")["value"].(string)
	return v
}

// exists is HEAD /cache/key (no loader: the arena, then Redis).
func exists(t *testing.T, addr, key string) bool {
	t.Helper()
	return doStatus(t, "HEAD", "http://"+addr+"/cache/"+key, "").code == 200
}

// eventually polls cond every 5 ms for up to d and returns how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// bridgeStatus is the master's /status "bridge" entry.
func bridgeStatus(t *testing.T, d *demo) map[string]any {
	t.Helper()
	r := doStatus(t, "GET", "http://"+d.st.Monitor+"/status", "")
	var all map[string]map[string]any
	if err := json.Unmarshal([]byte(r.body), &all); err != nil {
		t.Fatalf("/status: %v: %s", err, r.body)
	}
	for _, v := range all["bridge"] {
		return v.(map[string]any)
	}
	t.Fatalf("/status has no bridge: %s", r.body)
	return nil
}

// Two clusters (two masters on other ports, as two hosts would be) share
// one Redis through -redis: what one writes the other reads, and every
// write, delete, tag invalidation, Clear and redis-cli SET reaches both.
func TestDemoTwoClustersShareRedis(t *testing.T) {
	srv := redistest.Start(t)
	args := "-redis " + srv.Addr() + " -failsafe 3s"
	a, b := startDemo(t, args), startDemo(t, args)
	A, B := a.st.Addr, b.st.Addr
	for _, d := range []*demo{a, b} {
		eventually(t, 10*time.Second, "the bridge is up", func() bool { return bridgeStatus(t, d)["state"] == "up" })
	}

	do(t, "PUT", "http://"+A+"/cache/k", "v1")
	if got := value(t, B, "k"); got != "v1" {
		t.Fatalf("B read %q after A's PUT, want v1", got)
	}
	// An update on A: B's next GETs return the new value within a bound.
	var took []time.Duration
	for i := range 20 {
		want := fmt.Sprint("v", i+2)
		value(t, B, "k") // cached on B
		do(t, "PUT", "http://"+A+"/cache/k", want)
		took = append(took, eventually(t, 5*time.Second, "B reads A's update", func() bool { return value(t, B, "k") == want }))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("A's PUT answered → B's GET returns the new value: p50 %v, max %v (20 updates, HTTP polling every 5 ms)", took[10], took[19])

	do(t, "DELETE", "http://"+A+"/cache/k", "")
	eventually(t, 5*time.Second, "B sees A's delete", func() bool { return !exists(t, B, "k") })

	do(t, "PUT", "http://"+A+"/cache/t1?tags=red", "x")
	do(t, "PUT", "http://"+A+"/cache/t2?tags=red,blue", "x")
	do(t, "PUT", "http://"+A+"/cache/t3?tags=blue", "x")
	for _, k := range []string{"t1", "t2", "t3"} {
		value(t, B, k)
	}
	do(t, "DELETE", "http://"+A+"/cache?tag=red", "")
	eventually(t, 5*time.Second, "B drops the tag's entries", func() bool { return !exists(t, B, "t1") && !exists(t, B, "t2") })
	if !exists(t, B, "t3") {
		t.Fatal("B lost t3, which has no tag red")
	}
	do(t, "DELETE", "http://"+A+"/cache", "")
	eventually(t, 5*time.Second, "B sees A's Clear", func() bool { return !exists(t, B, "t3") })

	// A plain Redis client's write invalidates both.
	do(t, "PUT", "http://"+A+"/cache/cli", "ours")
	value(t, A, "cli")
	value(t, B, "cli")
	if _, err := srv.CLI("SET", "cluster2:demo:cli", "from redis-cli"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{A, B} {
		eventually(t, 5*time.Second, "redis-cli's SET reaches "+h, func() bool { return value(t, h, "cli") == "from redis-cli" })
	}
	if st := bridgeStatus(t, b); st["invalidations"].(float64) == 0 {
		t.Fatalf("B's bridge counts no invalidation: %v", st)
	}

	// Redis killed while both serve: hits keep being served (stale-marked,
	// fail-safe), writes fail clearly (503), nothing panics.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	for _, h := range []string{A, B} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r := doStatus(t, "GET", "http://"+h+"/cache/cli", "")
				if r.code == 200 && strings.Contains(r.body, "from redis-cli") {
					served.Add(1)
				} else {
					failed.Add(1)
					t.Errorf("GET %s/cache/cli while Redis dies: %d %s", h, r.code, r.body)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	srv.Kill()
	for _, d := range []*demo{a, b} {
		eventually(t, 10*time.Second, "the bridge goes down", func() bool { return bridgeStatus(t, d)["state"] == "down" })
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("while Redis died: %d GETs of a kept key served, %d failed", served.Load(), failed.Load())
	if r := doStatus(t, "PUT", "http://"+A+"/cache/cli", "new"); r.code != 503 || !strings.Contains(r.body, "redis") {
		t.Fatalf("PUT while Redis is down: %d %s, want 503 naming Redis", r.code, r.body)
	}
	value(t, A, "cli") // one more fail-safe serve; the workers publish their counters every 100 ms
	eventually(t, 5*time.Second, "A's bridge counts the stale serves", func() bool { return bridgeStatus(t, a)["staleServes"].(float64) > 0 })
	metrics := doStatus(t, "GET", "http://"+a.st.Monitor+"/metrics", "").body
	for _, m := range []string{"cluster2_bridge_up 0", "cluster2_bridge_invalidations_total", "cluster2_bridge_stale_serves_total"} {
		if !strings.Contains(metrics, m) {
			t.Fatalf("/metrics lacks %q", m)
		}
	}
	// Past the fail-safe limit (3 s after the loss) nothing stale is served.
	time.Sleep(3200 * time.Millisecond)
	for _, h := range []string{A, B} {
		if v := value(t, h, "cli"); v == "from redis-cli" {
			t.Fatalf("%s served the stale value past its fail-safe limit", h)
		}
	}

	srv.Restart() // empty: no persistence
	for _, d := range []*demo{a, b} {
		eventually(t, 10*time.Second, "the bridge comes back", func() bool { return bridgeStatus(t, d)["state"] == "up" })
		if st := bridgeStatus(t, d); st["reconnects"].(float64) < 1 {
			t.Fatalf("no reconnect counted: %v", st)
		}
	}
	// Both converge: one value per key on both hosts, and writes flow again.
	for _, k := range []string{"cli", "fresh"} {
		va, vb := value(t, A, k), value(t, B, k)
		eventually(t, 5*time.Second, "A and B agree on "+k, func() bool { va, vb = value(t, A, k), value(t, B, k); return va == vb })
	}
	do(t, "PUT", "http://"+A+"/cache/after", "restart")
	eventually(t, 5*time.Second, "B reads A's write after the restart", func() bool { return value(t, B, "after") == "restart" })
	for _, d := range []*demo{a, b} {
		if !strings.Contains(doStatus(t, "GET", "http://"+d.st.Addr+"/", "").body, "hello") {
			t.Fatal("a demo stopped serving")
		}
	}
}
