package worker

import (
	"encoding/json"
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

func TestHeartbeatWordsRoundTrip(t *testing.T) {
	h := Heartbeat{Pid: 1, Slot: 2, Uptime: 3, CPU: 4.5, RSS: 5, OpenConns: 6, TotalConns: 7, Requests: 8,
		RequestsDuration: 9, RPS: 10.25, GCCycles: 11, GCPause: 12, Goroutines: 13, Errors: 14, Cycle: 15, At: 16}
	w := h.Words()
	if got := HeartbeatFromWords(&w); got != h {
		t.Fatalf("round trip: got %+v; want %+v", got, h)
	}
}

func TestCollectorCountsTheCycle(t *testing.T) {
	c := counters{totals: new(proc.Block)}
	start := time.Now()
	col := newCollector(1, 1, start, &c)
	c.totals.CountRequests(10)
	c.durations.Add(int64(time.Second))
	for range 3 {
		c.totals.CountAccept()
	}
	h := col.take(start.Add(2 * time.Second))
	if h.Requests != 10 || h.RPS != 5 || h.RequestsDuration != time.Second || h.TotalConns != 3 {
		t.Fatalf("first cycle: %+v; want 10 requests, 5/s, 1 s, 3 connections", h)
	}
	h = col.take(start.Add(3 * time.Second))
	if h.Requests != 0 || h.RPS != 0 {
		t.Fatalf("second cycle: %+v; want no requests", h)
	}
	if h.Goroutines <= 0 {
		t.Fatalf("goroutines %d; want > 0", h.Goroutines)
	}
}

// TestHeartbeatJSON: a Heartbeat's JSON form is the documented shape
// (camelCase, durations in seconds, GC pause in ms, at in RFC 3339 or null)
// and decodes back to the same value; a NaN does not make it unencodable.
func TestHeartbeatJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 20, 0, 0, 123456789, time.UTC)
	h := Heartbeat{Pid: 12, Slot: 1, Uptime: 72*time.Hour + 1, CPU: 12.5, RSS: 50 << 20, OpenConns: 3, TotalConns: 40,
		Requests: 100, RequestsDuration: 800 * time.Millisecond, RPS: 20, GCCycles: 2, GCPause: 1500 * time.Microsecond,
		Goroutines: 9, Errors: 1, Cycle: 5*time.Second + 7, At: at.UnixNano()}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"pid": 12.0, "slot": 1.0, "uptimeSeconds": (72*time.Hour + 1).Seconds(), "cpuPercent": 12.5,
		"rssBytes": float64(50 << 20), "openConns": 3.0, "totalConns": 40.0, "requests": 100.0, "requestsSeconds": 0.8,
		"rps": 20.0, "gcCycles": 2.0, "gcPauseMs": 1.5, "goroutines": 9.0, "errors": 1.0,
		"cycleSeconds": (5*time.Second + 7).Seconds(), "at": "2026-12-01T20:00:00.123456789Z"}
	if !maps.Equal(m, want) {
		t.Fatalf("JSON %s;\nwant %v", b, want)
	}
	var back Heartbeat
	if err := json.Unmarshal(b, &back); err != nil || back != h {
		t.Fatalf("round trip: %+v, %v; want %+v", back, err, h)
	}

	b, err = json.Marshal(Heartbeat{})
	if err != nil || !strings.Contains(string(b), `"at":null`) {
		t.Fatalf("zero heartbeat: %s, %v; want at null", b, err)
	}
	if err := json.Unmarshal(b, &back); err != nil || back != (Heartbeat{}) {
		t.Fatalf("zero round trip: %+v, %v", back, err)
	}
	if b, err = json.Marshal(Heartbeat{CPU: math.NaN(), RPS: math.Inf(1)}); err != nil {
		t.Fatalf("NaN CPU: %v; want encoded (as 0)", err)
	}
}
