package worker

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/shirou/gopsutil/v4/process"
)

// Heartbeat is what a worker reports about itself every heartbeat interval.
// Counters named "in the cycle" cover the time since the previous heartbeat.
// The zero value is an empty heartbeat; a Heartbeat is a plain value, safe to
// copy and to share between goroutines. Its JSON form (MarshalJSON:
// camelCase names, durations in seconds) is the one shape a heartbeat has
// everywhere: the "heartbeat" emitter event, the status.os status and the
// monitor's /status.
type Heartbeat struct {
	Pid              int           // the worker's pid
	Slot             int           // the worker's slot in the arena's process table
	Uptime           time.Duration // since the worker process started
	CPU              float64       // CPU use in the cycle, percent of one core
	RSS              uint64        // resident memory, bytes
	OpenConns        int64         // connections open now
	TotalConns       uint64        // connections accepted on the shared socket since start (the control block's count)
	Requests         uint64        // requests completed in the cycle
	RequestsDuration time.Duration // their total duration
	RPS              float64       // Requests per second of the cycle
	GCCycles         uint64        // GC cycles completed in the cycle
	GCPause          time.Duration // stop-the-world GC pause time in the cycle (from histogram buckets: approximate)
	Goroutines       int64         // goroutines now
	Errors           uint64        // handler panics and reported errors in the cycle
	Cycle            time.Duration // length of the cycle
	At               int64         // when it was taken, Unix nanoseconds
}

// Time returns when the heartbeat was taken.
func (h Heartbeat) Time() time.Time { return time.Unix(0, h.At) }

// heartbeatJSON is Heartbeat's JSON form: the one shape a heartbeat has
// wherever it is shown (the "heartbeat" emitter event, the status.os status,
// the monitor's /status, Workers encoded as JSON).
type heartbeatJSON struct {
	Pid             int        `json:"pid"`
	Slot            int        `json:"slot"`
	UptimeSeconds   float64    `json:"uptimeSeconds"`
	CPUPercent      float64    `json:"cpuPercent"`
	RSSBytes        uint64     `json:"rssBytes"`
	OpenConns       int64      `json:"openConns"`
	TotalConns      uint64     `json:"totalConns"`
	Requests        uint64     `json:"requests"`
	RequestsSeconds float64    `json:"requestsSeconds"`
	RPS             float64    `json:"rps"`
	GCCycles        uint64     `json:"gcCycles"`
	GCPauseMs       float64    `json:"gcPauseMs"`
	Goroutines      int64      `json:"goroutines"`
	Errors          uint64     `json:"errors"`
	CycleSeconds    float64    `json:"cycleSeconds"`
	At              *time.Time `json:"at"`
}

// MarshalJSON encodes h in the one JSON shape of a heartbeat, everywhere:
//
//	{"pid": 12, "slot": 1, "uptimeSeconds": 60, "cpuPercent": 12.5,
//	 "rssBytes": 52428800, "openConns": 3, "totalConns": 40, "requests": 100,
//	 "requestsSeconds": 0.8, "rps": 20, "gcCycles": 2, "gcPauseMs": 1,
//	 "goroutines": 9, "errors": 0, "cycleSeconds": 5,
//	 "at": "2026-12-01T20:00:00.123456789Z"}
//
// camelCase names with their unit; durations in seconds (the GC pause in
// milliseconds, as on the dashboard); at is RFC 3339 in UTC with
// nanoseconds, null for the zero Heartbeat (no heartbeat yet). A CPU or
// rate that is not a finite number is written as 0 (JSON has no NaN).
// UnmarshalJSON decodes it back to the same value (durations to the
// nanosecond up to days; within a nanosecond beyond).
func (h Heartbeat) MarshalJSON() ([]byte, error) {
	j := heartbeatJSON{Pid: h.Pid, Slot: h.Slot, UptimeSeconds: h.Uptime.Seconds(), CPUPercent: finite(h.CPU),
		RSSBytes: h.RSS, OpenConns: h.OpenConns, TotalConns: h.TotalConns, Requests: h.Requests,
		RequestsSeconds: h.RequestsDuration.Seconds(), RPS: finite(h.RPS), GCCycles: h.GCCycles,
		GCPauseMs: float64(h.GCPause) / float64(time.Millisecond), Goroutines: h.Goroutines, Errors: h.Errors,
		CycleSeconds: h.Cycle.Seconds()}
	if h.At != 0 {
		at := h.Time().UTC()
		j.At = &at
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (h *Heartbeat) UnmarshalJSON(b []byte) error {
	var j heartbeatJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("worker: heartbeat: %w", err)
	}
	*h = Heartbeat{Pid: j.Pid, Slot: j.Slot, Uptime: seconds(j.UptimeSeconds), CPU: j.CPUPercent, RSS: j.RSSBytes,
		OpenConns: j.OpenConns, TotalConns: j.TotalConns, Requests: j.Requests,
		RequestsDuration: seconds(j.RequestsSeconds), RPS: j.RPS, GCCycles: j.GCCycles,
		GCPause: time.Duration(math.Round(j.GCPauseMs * float64(time.Millisecond))), Goroutines: j.Goroutines,
		Errors: j.Errors, Cycle: seconds(j.CycleSeconds)}
	if j.At != nil {
		h.At = j.At.UnixNano()
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// Words encodes h as the arena's heartbeat words (the order of the fields
// above; floats as IEEE-754 bits). The format belongs to the supervision
// region: see package internal/proc.
func (h Heartbeat) Words() (w [proc.HeartbeatWords]uint64) {
	w = [proc.HeartbeatWords]uint64{
		uint64(h.Pid), uint64(h.Slot), uint64(h.Uptime), math.Float64bits(h.CPU), h.RSS,
		uint64(h.OpenConns), h.TotalConns, h.Requests, uint64(h.RequestsDuration), math.Float64bits(h.RPS),
		h.GCCycles, uint64(h.GCPause), uint64(h.Goroutines), h.Errors, uint64(h.Cycle), uint64(h.At),
	}
	return w
}

// HeartbeatFromWords decodes what Words encoded.
func HeartbeatFromWords(w *[proc.HeartbeatWords]uint64) Heartbeat {
	return Heartbeat{
		Pid: int(w[0]), Slot: int(w[1]), Uptime: time.Duration(w[2]), CPU: math.Float64frombits(w[3]), RSS: w[4],
		OpenConns: int64(w[5]), TotalConns: w[6], Requests: w[7], RequestsDuration: time.Duration(w[8]),
		RPS: math.Float64frombits(w[9]), GCCycles: w[10], GCPause: time.Duration(w[11]), Goroutines: int64(w[12]),
		Errors: w[13], Cycle: time.Duration(w[14]), At: int64(w[15]),
	}
}

// counters are the worker's live statistics, updated by the serving path.
type counters struct {
	openConns atomic.Int64
	durations atomic.Int64 // ns
	errors    atomic.Uint64
	// totals holds the accepts and requests since the worker started: the
	// worker's control block, where the master reads them live (one count
	// each, which the heartbeat reports too).
	totals *proc.Block
}

// collector turns counters and process statistics into heartbeats.
type collector struct {
	pid, slot int
	start     time.Time
	c         *counters
	ps        *process.Process // nil when gopsutil cannot see us

	last        time.Time
	lastReq     uint64
	lastDur     int64
	lastErr     uint64
	lastGC      uint64
	lastPause   float64 // seconds, bucket-weighted
	samples     []metrics.Sample
	initialized bool
}

func newCollector(pid, slot int, start time.Time, c *counters) *collector {
	col := &collector{pid: pid, slot: slot, start: start, c: c, last: start}
	if p, err := process.NewProcess(int32(pid)); err == nil {
		col.ps = p
		p.Percent(0) // primes the CPU counter: the next call measures the cycle
		if ms, err := p.CreateTime(); err == nil && pid == os.Getpid() {
			col.start = time.UnixMilli(ms) // uptime counts from the process's start
		}
	}
	col.samples = []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/sched/pauses/total/gc:seconds"},
		{Name: "/sched/goroutines:goroutines"},
	}
	col.gc() // baseline
	return col
}

// gc reads the runtime metrics: cycles, pause seconds (approximated from the
// histogram by bucket lower bounds), goroutines.
func (col *collector) gc() (cycles uint64, pause float64, goroutines int64) {
	metrics.Read(col.samples)
	if v := col.samples[0].Value; v.Kind() == metrics.KindUint64 {
		cycles = v.Uint64()
	}
	if v := col.samples[1].Value; v.Kind() == metrics.KindFloat64Histogram {
		h := v.Float64Histogram()
		for i, n := range h.Counts {
			lo := h.Buckets[i]
			if math.IsInf(lo, -1) {
				lo = 0
			}
			pause += float64(n) * lo
		}
	}
	if v := col.samples[2].Value; v.Kind() == metrics.KindUint64 {
		goroutines = int64(v.Uint64())
	}
	if !col.initialized {
		col.lastGC, col.lastPause, col.initialized = cycles, pause, true
	}
	return cycles, pause, goroutines
}

// take returns the heartbeat of the cycle that ends now.
func (col *collector) take(now time.Time) Heartbeat {
	cycles, pause, goroutines := col.gc()
	req, dur, errs := col.c.totals.Requests(), col.c.durations.Load(), col.c.errors.Load()
	cycle := now.Sub(col.last)
	h := Heartbeat{
		Pid: col.pid, Slot: col.slot, Uptime: now.Sub(col.start),
		OpenConns: col.c.openConns.Load(), TotalConns: col.c.totals.Accepts(),
		Requests: req - col.lastReq, RequestsDuration: time.Duration(dur - col.lastDur),
		GCCycles: cycles - col.lastGC, GCPause: time.Duration((pause - col.lastPause) * float64(time.Second)),
		Goroutines: goroutines, Errors: errs - col.lastErr, Cycle: cycle, At: now.UnixNano(),
	}
	if cycle > 0 {
		h.RPS = float64(h.Requests) / cycle.Seconds()
	}
	if col.ps != nil {
		if cpu, err := col.ps.Percent(0); err == nil {
			h.CPU = cpu
		}
		if m, err := col.ps.MemoryInfo(); err == nil {
			h.RSS = m.RSS
		}
	}
	col.last, col.lastReq, col.lastDur, col.lastErr, col.lastGC, col.lastPause = now, req, dur, errs, cycles, pause
	return h
}
