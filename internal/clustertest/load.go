package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// Get fetches url with c and decodes [Child]'s [Reply]; a status other than
// 200 is an error carrying the body.
func Get(c *http.Client, url string) (Reply, error) {
	var r Reply
	resp, err := c.Get(url)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return r, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// Get fetches path from the cluster ([Child]'s handler) with a fresh
// connection.
func (p *Process) Get(path string) (Reply, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	return Get(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "http://"+p.Addr+path)
}

// SeenPids sends n requests on fresh connections and returns how many each
// pid served; a failed request fails the test.
func (p *Process) SeenPids(n int) map[int]int {
	p.tb.Helper()
	seen := map[int]int{}
	for range n {
		r, err := p.Get("/")
		if err != nil {
			p.tb.Fatalf("GET /: %v", err)
		}
		seen[r.Pid]++
	}
	return seen
}

// ServedByAll reports, within 30 s, whether requests on fresh connections
// reach every pid of want; a request served by another pid fails the test.
func (p *Process) ServedByAll(want map[int]bool) bool {
	p.tb.Helper()
	return xtesting.Eventually(30*time.Second, func() bool {
		seen := p.SeenPids(20)
		for pid := range seen {
			if !want[pid] {
				p.tb.Fatalf("pid %d served a request; want one of %v", pid, want)
			}
		}
		return len(seen) == len(want)
	})
}

// Counts are what a load ([Process.Load], [Process.PutLoad]) did, once its
// WaitGroup is done.
type Counts struct {
	Done, Failed atomic.Int64
	mu           sync.Mutex
	errs         []string // the first five errors
}

// Errs returns the first errors (up to five).
func (c *Counts) Errs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

func (c *Counts) note(err error) {
	if err == nil {
		c.Done.Add(1)
		return
	}
	c.Failed.Add(1)
	c.mu.Lock()
	if len(c.errs) < 5 {
		c.errs = append(c.errs, err.Error())
	}
	c.mu.Unlock()
}

// Loop runs clients concurrent loops until stop is closed: each calls
// setup once (its client: a connection, a transport) and then counts do's
// outcomes until stop is closed, then calls the teardown setup returned (if
// not nil). Wait on the WaitGroup before reading the counts. For loads with
// clients other than net/http's (gRPC's).
func Loop[C any](clients int, stop <-chan struct{}, setup func() (C, func()), do func(c C) error) (*Counts, *sync.WaitGroup) {
	n, wg := new(Counts), new(sync.WaitGroup)
	for range clients {
		wg.Go(func() {
			c, done := setup()
			if done != nil {
				defer done()
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				n.note(do(c))
			}
		})
	}
	return n, wg
}

// run runs clients loops of do, each with a client of its own (one idle
// connection at most, kept alive or not), until stop is closed.
func (p *Process) run(clients int, keepAlive bool, stop <-chan struct{}, do func(c *http.Client) error) (*Counts, *sync.WaitGroup) {
	return Loop(clients, stop, func() (*http.Client, func()) {
		tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
	}, do)
}

// Replaced waits up to d until the active workers are as many as before and
// none of them is one of before (a rolling restart replaced them all).
func (p *Process) Replaced(before map[int]bool, d time.Duration) bool {
	return xtesting.Eventually(d, func() bool {
		now, err := p.Active()
		replaced := err == nil && len(now) == len(before)
		for _, pid := range now {
			replaced = replaced && !before[pid]
		}
		if !replaced {
			time.Sleep(50 * time.Millisecond)
		}
		return replaced
	})
}

// Load runs clients concurrent GET / loops against the cluster (on
// keep-alive connections or a new connection per request) until stop is
// closed; wait on the WaitGroup before reading the counts.
func (p *Process) Load(clients int, keepAlive bool, stop <-chan struct{}) (*Counts, *sync.WaitGroup) {
	return p.run(clients, keepAlive, stop, func(c *http.Client) error {
		_, err := Get(c, "http://"+p.Addr+"/")
		return err
	})
}

// PutLoad runs clients keep-alive loops of PUT /put (256 bytes; each client
// on one connection at a time) until stop is closed. No client replays a
// PUT: a drain that closes a connection under one fails it.
func (p *Process) PutLoad(clients int, stop <-chan struct{}) (*Counts, *sync.WaitGroup) {
	body := bytes.Repeat([]byte("v"), 256)
	return p.run(clients, true, stop, func(c *http.Client) error {
		// bytes.Reader: GetBody is set, but PUT is not replayed by
		// net/http's transport (not an idempotent method to it).
		req, _ := http.NewRequest("PUT", "http://"+p.Addr+"/put", bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// WorkerCounts are one worker's live totals as the monitor's /metrics shows
// them (cluster2_worker_accepts_total, cluster2_worker_requests_total).
type WorkerCounts struct{ Accepts, Requests uint64 }

var countLine = regexp.MustCompile(`^cluster2_worker_(accepts|requests)_total\{pid="(\d+)",slot="\d+"\} (\d+)$`)

// MetricCounts reads every worker's accepts and requests, by pid, from the
// /metrics of the monitor at mon ("http://host:port").
func MetricCounts(mon string) (map[int]WorkerCounts, error) {
	resp, err := http.Get(mon + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	out := map[int]WorkerCounts{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		m := countLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		v, _ := strconv.ParseUint(m[3], 10, 64)
		wc := out[pid]
		if m[1] == "accepts" {
			wc.Accepts = v
		} else {
			wc.Requests = v
		}
		out[pid] = wc
	}
	return out, sc.Err()
}

// A NamedLoad is a load RollingRestartUnder runs: Start starts it (as
// [Process.Load] or [Loop] do) until stop is closed.
type NamedLoad struct {
	Name  string
	Start func(stop <-chan struct{}) (*Counts, *sync.WaitGroup)
}

// RollingRestartUnder starts the loads, asks for a rolling restart (the
// control route /rolling) 300 ms later, waits up to d until every worker of
// before was replaced, keeps the loads on for 300 ms more and stops them. It
// logs each load's counts and fails the test unless the restart replaced
// every worker, each load had requests served and none failed.
func (p *Process) RollingRestartUnder(before map[int]bool, d time.Duration, loads ...NamedLoad) {
	p.tb.Helper()
	stop := make(chan struct{})
	counts := make([]*Counts, len(loads))
	var wgs []*sync.WaitGroup
	for i, l := range loads {
		var wg *sync.WaitGroup
		counts[i], wg = l.Start(stop)
		wgs = append(wgs, wg)
	}
	time.Sleep(300 * time.Millisecond)
	rolled := p.Control("/rolling", nil)
	replaced := p.Replaced(before, d)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	for _, wg := range wgs {
		wg.Wait()
	}
	if rolled != nil || !replaced {
		p.tb.Fatalf("rolling restart: %v; every worker of %v replaced: %v (%+v)", rolled, before, replaced, p.Workers())
	}
	for i, l := range loads {
		n := counts[i]
		p.tb.Logf("rolling restart: %s: %d requests, %d failed", l.Name, n.Done.Load(), n.Failed.Load())
		if n.Failed.Load() != 0 || n.Done.Load() == 0 {
			p.tb.Errorf("rolling restart: %s: %d failed of %d (first: %v); want 0 failed of some",
				l.Name, n.Failed.Load(), n.Done.Load()+n.Failed.Load(), n.Errs())
		}
	}
}

// NamedLoad returns the NamedLoad of [Process.Load] with clients clients.
func (p *Process) NamedLoad(clients int, keepAlive bool) NamedLoad {
	name := fmt.Sprintf("%d net/http clients, a new connection per request", clients)
	if keepAlive {
		name = fmt.Sprintf("%d net/http clients, kept connections", clients)
	}
	return NamedLoad{Name: name, Start: func(stop <-chan struct{}) (*Counts, *sync.WaitGroup) {
		return p.Load(clients, keepAlive, stop)
	}}
}
