package master

import (
	"sync"
	"time"

	"github.com/cluster2/cluster2/worker"
)

// minJudgedRPS is the traffic below which a heartbeat says nothing about GC
// health (the Node original's "≤ 2 tps").
const minJudgedRPS = 2

// maxPeaks bounds the peaks DefaultShouldKill keeps: past it (replaced
// workers' pids accumulate) they are all forgotten and relearnt.
const maxPeaks = 1024

// peak is the best a worker has done: the highest requests/s seen, with the
// highest cpu, memory and GC pause seen at or after such a sample.
type peak struct {
	rps, cpu float64
	rss      uint64
	pause    time.Duration
}

// DefaultShouldKill returns the default recycling rule: a worker is replaced
// when it is old (Uptime ≥ maxAge; maxAge ≤ 0 means never) or shows bad GC.
// Bad GC keeps a peak per worker pid and ignores samples of ≤ 2 requests/s; a
// sample at or above the peak's requests/s raises every field of the peak; a
// sample below it is bad only when its requests/s fell more than 10% below
// the peak while cpu, memory and GC pause all rose above the peak's. The
// returned function is safe for concurrent use; each call of DefaultShouldKill
// has its own peaks.
func DefaultShouldKill(maxAge time.Duration) func(worker.Heartbeat) bool {
	var mu sync.Mutex
	peaks := map[int]*peak{}
	return func(h worker.Heartbeat) bool {
		if maxAge > 0 && h.Uptime >= maxAge {
			return true
		}
		if h.RPS <= minJudgedRPS {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		p, ok := peaks[h.Pid]
		if !ok {
			if len(peaks) >= maxPeaks {
				clear(peaks) // pids of long-gone workers: start afresh
			}
			peaks[h.Pid] = &peak{rps: h.RPS, cpu: h.CPU, rss: h.RSS, pause: h.GCPause}
			return false
		}
		if h.RPS >= p.rps {
			p.rps, p.cpu, p.rss, p.pause = h.RPS, max(p.cpu, h.CPU), max(p.rss, h.RSS), max(p.pause, h.GCPause)
			return false
		}
		return h.RPS < 0.9*p.rps && h.CPU > p.cpu && h.RSS > p.rss && h.GCPause > p.pause
	}
}
