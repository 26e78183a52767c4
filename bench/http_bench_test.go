package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
)

func init() {
	children["http-prefork"] = childHTTPPrefork
	children["http-single"] = childHTTPSingle
}

var helloBody = []byte("hello world")

func hello(w http.ResponseWriter, r *http.Request) { w.Write(helloBody) }

// childHTTPPrefork is main of a 2-worker cluster2 cluster serving hello
// world: the master prints its address, workers serve.
func childHTTPPrefork() {
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: 2, Addr: "127.0.0.1:0", MonitorAddr: "127.0.0.1:0", Handler: http.HandlerFunc(hello), HeartbeatInterval: time.Second,
		Logger: discardLogger(),
	})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if c.IsMaster() {
		fmt.Println("ADDR", c.Addr())
	}
	c.Wait()
}

// childHTTPSingle is the peer: one process, plain net/http, same handler.
func childHTTPSingle() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", ln.Addr())
	http.Serve(ln, http.HandlerFunc(hello))
}

// startServer runs child and returns the address it prints.
func startServer(b *testing.B, child string) string {
	b.Helper()
	var env []string
	if e := os.Getenv("BENCH_HTTP_CHILD_ENV"); e != "" {
		env = strings.Fields(e) // e.g. GOMAXPROCS=2, to compare settings
	}
	p := clustertest.Spec{Child: child, Env: env, Ready: func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 2 && f[0] == "ADDR"
	}}.Start(b)
	return strings.Fields(p.ReadyLine)[1]
}

// BenchmarkHTTPPrefork measures hello-world throughput over loopback
// keep-alive connections (32 concurrent clients) of a 2-worker cluster2
// cluster and of a single net/http process, in the same run. It reports
// requests per second; the client runs in the benchmark process, on the
// same cores as the servers.
func BenchmarkHTTPPrefork(b *testing.B) {
	for _, peer := range []struct{ name, child string }{
		{"net-http-single-process", "http-single"},
		{"cluster2-prefork-2-workers", "http-prefork"},
	} {
		b.Run(peer.name, func(b *testing.B) {
			url := "http://" + startServer(b, peer.child) + "/"
			tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			// Warm the connections and the servers.
			for range 200 {
				if err := get(client, url); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := get(client, url); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkHTTPPreforkInterleaved runs both servers at once and alternates
// the same load between them in 100 ms windows (one window each per
// iteration), so that background noise falls on both alike. It reports each
// side's req/s and their ratio (prefork/single: the 0.9 target).
func BenchmarkHTTPPreforkInterleaved(b *testing.B) {
	urls := []string{"http://" + startServer(b, "http-single") + "/", "http://" + startServer(b, "http-prefork") + "/"}
	clients := make([]*http.Client, len(urls))
	for i, u := range urls {
		tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
		for range 200 {
			if err := get(clients[i], u); err != nil {
				b.Fatal(err)
			}
		}
	}
	const window, workers = 100 * time.Millisecond, 32
	var count [2]int64
	var spent [2]time.Duration
	for b.Loop() {
		for side := range urls {
			start := time.Now()
			end := start.Add(window)
			var n atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						if err := get(clients[side], urls[side]); err != nil {
							b.Error(err)
							return
						}
						n.Add(1)
					}
				}()
			}
			wg.Wait()
			count[side] += n.Load()
			spent[side] += time.Since(start)
		}
	}
	single := float64(count[0]) / spent[0].Seconds()
	prefork := float64(count[1]) / spent[1].Seconds()
	b.ReportMetric(single, "single-req/s")
	b.ReportMetric(prefork, "prefork-req/s")
	b.ReportMetric(prefork/single, "prefork/single")
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
