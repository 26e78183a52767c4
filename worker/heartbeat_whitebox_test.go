package worker

import (
	"testing"
	"time"
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
	var c counters
	start := time.Now()
	col := newCollector(1, 1, start, &c)
	c.requests.Add(10)
	c.durations.Add(int64(time.Second))
	c.totalConns.Add(3)
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
