package monitor

import (
	"time"

	"github.com/cluster2/cluster2/worker"
)

// HeartbeatStatus is a worker's latest heartbeat as JSON, in the one shape
// both the status.os status (package status: each worker registers it) and
// the monitor's /status (under "status.os", pid → HeartbeatStatus) show:
// camelCase names, durations in seconds (GC pause in milliseconds, as on the
// dashboard), the time as RFC 3339. Counters named "in the cycle" cover the
// Cycle before At.
type HeartbeatStatus struct {
	Pid             int       `json:"pid"`
	Slot            int       `json:"slot"`
	UptimeSeconds   float64   `json:"uptimeSeconds"`   // since the worker process started
	CPUPercent      float64   `json:"cpuPercent"`      // CPU use in the cycle, percent of one core
	RSSBytes        uint64    `json:"rssBytes"`        // resident memory
	OpenConns       int64     `json:"openConns"`       // connections open now
	TotalConns      uint64    `json:"totalConns"`      // connections accepted since start
	Requests        uint64    `json:"requests"`        // requests completed in the cycle
	RequestsSeconds float64   `json:"requestsSeconds"` // their total duration
	RPS             float64   `json:"rps"`             // requests per second of the cycle
	GCCycles        uint64    `json:"gcCycles"`        // GC cycles in the cycle
	GCPauseMs       float64   `json:"gcPauseMs"`       // stop-the-world GC pause in the cycle (approximate)
	Goroutines      int64     `json:"goroutines"`      // goroutines now
	Errors          uint64    `json:"errors"`          // handler panics and reported errors in the cycle
	CycleSeconds    float64   `json:"cycleSeconds"`    // length of the cycle
	At              time.Time `json:"at"`              // when the heartbeat was taken
}

// HeartbeatStatusOf returns hb as a HeartbeatStatus.
func HeartbeatStatusOf(hb worker.Heartbeat) HeartbeatStatus {
	return HeartbeatStatus{Pid: hb.Pid, Slot: hb.Slot, UptimeSeconds: hb.Uptime.Seconds(), CPUPercent: hb.CPU,
		RSSBytes: hb.RSS, OpenConns: hb.OpenConns, TotalConns: hb.TotalConns, Requests: hb.Requests,
		RequestsSeconds: hb.RequestsDuration.Seconds(), RPS: hb.RPS, GCCycles: hb.GCCycles,
		GCPauseMs: float64(hb.GCPause) / float64(time.Millisecond), Goroutines: hb.Goroutines, Errors: hb.Errors,
		CycleSeconds: hb.Cycle.Seconds(), At: hb.Time().UTC()}
}
