package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/redistest"
)

func init() { children["two-host"] = childTwoHost }

// Two-host scenario: the variables of childTwoHost.
const (
	envTwoHostRedis   = "BENCH_TWOHOST_REDIS"   // Redis's address
	envTwoHostWorkers = "BENCH_TWOHOST_WORKERS" // workers per host (default 1)
	twoHostCache      = "twohost"               // the distributed cache
	twoHostLocal      = "twohost-local"         // a cache of each host's own (the ceiling side)
	twoHostKeys       = 10_000
	twoHostValue      = 64
)

// childTwoHost is main of one host of BenchmarkTwoHosts9010: a cluster whose
// workers serve the same keys three ways, /c/<key> through the distributed
// cache (the arena, then Redis through the host's bridge), /r/<key> through
// a rueidis client of the worker's own, straight to Redis, and /l/<key>
// through a cache of the host's own: GET reads (404 when absent), PUT writes
// the body.
func childTwoHost() {
	addr := os.Getenv(envTwoHostRedis)
	workers, _ := strconv.Atoi(os.Getenv(envTwoHostWorkers))
	var rc rueidis.Client // a worker's, made at its first /r/ request
	var rcOnce sync.Once
	redisClient := func() rueidis.Client {
		rcOnce.Do(func() {
			c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
			if err != nil {
				panic(err)
			}
			rc = c
		})
		return rc
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/c/{key}", twoHostCacheRoute(twoHostCache))
	mux.HandleFunc("/l/{key}", twoHostCacheRoute(twoHostLocal))
	mux.HandleFunc("/r/{key}", func(w http.ResponseWriter, r *http.Request) {
		c := redisClient()
		key := "bench:r:" + r.PathValue("key")
		if r.Method == http.MethodPut {
			body, _ := io.ReadAll(r.Body)
			if err := c.Do(r.Context(), c.B().Set().Key(key).Value(rueidis.BinaryString(body)).Build()).Error(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
			}
			return
		}
		v, err := c.Do(r.Context(), c.B().Get().Key(key).Build()).AsBytes()
		if rueidis.IsRedisNil(err) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write(v)
	})
	cfg := cluster2.Config{
		Workers: max(workers, 1), Addr: "127.0.0.1:0", Handler: mux, HeartbeatInterval: time.Second,
		Logger: discardLogger(), Monitor: cluster2.MonitorConfig{Disabled: true},
		Cache: twoHostCacheConfig(addr),
	}
	c, err := cluster2.Listen(context.Background(), cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if c.IsMaster() {
		fmt.Println("ADDR", c.Addr())
	}
	c.Wait()
}

// twoHostCacheRoute serves /c/ and /l/: GET through the cache called name
// (a miss of the distributed one asks Redis first), PUT into it (the
// distributed one writes Redis first).
func twoHostCacheRoute(name string) http.HandlerFunc {
	var h atomic.Pointer[cache.Cache] // the routes' handle, opened at the first request
	return func(w http.ResponseWriter, r *http.Request) {
		c := h.Load()
		if c == nil {
			nc, err := cache.Use(name, cache.Options{})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if !h.CompareAndSwap(nil, nc) {
				nc.Close()
			}
			c = h.Load()
		}
		key := r.PathValue("key")
		if r.Method == http.MethodPut {
			body, _ := io.ReadAll(r.Body)
			if _, err := c.Set(r.Context(), key, body, cache.SetOptions{}); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
			}
			return
		}
		v, err := c.Get(r.Context(), key, twoHostAbsent)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(v)
	}
}

// twoHostAbsent is the loader of the benchmark's cache: every key was
// written first, so a key neither the arena nor Redis has is an error.
func twoHostAbsent(_ context.Context, key string) ([]byte, error) {
	return nil, fmt.Errorf("key %q is in neither the arena nor Redis: %w", key, cache.ErrNotFound)
}

// twoHostCacheConfig is the hosts' cache: enabled, "twohost" distributed on
// Redis at addr.
func twoHostCacheConfig(addr string) cluster2.CacheConfig {
	return cluster2.CacheConfig{Enabled: true, Redis: cluster2.RedisConfig{Addr: addr, Caches: []string{twoHostCache}}}
}

// BenchmarkTwoHosts9010 is the throughput of a 90/10 read/write mix (GET and
// PUT of 64-byte values over 10,000 keys, uniformly at random) across two
// hosts — two clusters sharing one Redis, the benchmark's clients spread over
// both — through the distributed cache (c2: a read is an arena hit once the
// key was loaded; a write goes to Redis and drops the key from both hosts'
// arenas, the writer's at once and the other's by Redis's invalidation, so
// the next read of it on either host is a Redis GET) against the same
// workers using Redis directly (redis: every request a GET or SET through
// the worker's rueidis client), with a cache of each host's own as the
// ceiling (local: no Redis at all; writes are not shared). The sides
// alternate in 100 ms windows (32 client goroutines, keep-alive) so that
// noise falls on all alike; it reports each side's req/s and the ratios
// c2/redis and c2/local. BENCH_TWOHOST_WORKERS sets the workers per host
// (default 1: two hosts, their masters, Redis and the clients already share
// the cores).
func BenchmarkTwoHosts9010(b *testing.B) {
	srv := redistest.Start(b)
	workers := os.Getenv(envTwoHostWorkers)
	var hosts []string
	for range 2 {
		p := clustertest.Spec{Child: "two-host", Env: []string{envTwoHostRedis + "=" + srv.Addr(), envTwoHostWorkers + "=" + workers},
			Ready: func(l string) bool { f := strings.Fields(l); return len(f) == 2 && f[0] == "ADDR" }}.Start(b)
		hosts = append(hosts, "http://"+strings.Fields(p.ReadyLine)[1])
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	value := bytes.Repeat([]byte("v"), twoHostValue)
	sides := []string{"/c/", "/r/", "/l/"}
	// Every key written once on each side (through host A; each host for
	// the hosts' own caches), then read once through each host: the mix
	// starts warm.
	for _, side := range sides {
		for i, h := range hosts {
			if i > 0 && side != "/l/" {
				break
			}
			for k := range twoHostKeys {
				if err := twoHostDo(client, http.MethodPut, h+side+strconv.Itoa(k), value); err != nil {
					b.Fatal(err)
				}
			}
		}
		for _, h := range hosts {
			for k := range twoHostKeys {
				if err := twoHostDo(client, http.MethodGet, h+side+strconv.Itoa(k), nil); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	const window, clients = 100 * time.Millisecond, 32
	var count [3]int64
	var spent [3]time.Duration
	var failed atomic.Int64
	for b.Loop() {
		for s, side := range sides {
			start := time.Now()
			end := start.Add(window)
			var n atomic.Int64
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
					host := hosts[i%len(hosts)]
					for time.Now().Before(end) {
						url := host + side + strconv.Itoa(r.IntN(twoHostKeys))
						var err error
						if r.IntN(10) == 0 {
							err = twoHostDo(client, http.MethodPut, url, value)
						} else {
							err = twoHostDo(client, http.MethodGet, url, nil)
						}
						if err != nil {
							failed.Add(1)
							continue
						}
						n.Add(1)
					}
				}()
			}
			wg.Wait()
			count[s] += n.Load()
			spent[s] += time.Since(start)
		}
	}
	if f := failed.Load(); f > 0 {
		b.Errorf("%d requests failed", f)
	}
	c2 := float64(count[0]) / spent[0].Seconds()
	direct := float64(count[1]) / spent[1].Seconds()
	local := float64(count[2]) / spent[2].Seconds()
	b.ReportMetric(c2, "c2-req/s")
	b.ReportMetric(direct, "redis-req/s")
	b.ReportMetric(local, "local-req/s")
	b.ReportMetric(c2/direct, "c2/redis")
	b.ReportMetric(c2/local, "c2/local")
}

// twoHostDo makes one request; a GET must find the key (200), a PUT must
// succeed.
func twoHostDo(c *http.Client, method, url string, body []byte) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d", method, url, resp.StatusCode)
	}
	return nil
}
