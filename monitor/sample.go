package monitor

import (
	"encoding/json"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/master"
)

// sampler keeps, per worker, the history the dashboard charts and the
// running totals /metrics exports as counters, fed by the latest heartbeat
// of each worker (a heartbeat is counted once, by its time). Accepts and
// requests are not summed here: the worker counts them in its control block
// and master.WorkerInfo carries them live.
type sampler struct {
	size int

	mu     sync.Mutex
	byPid  map[int]*series
	recent []eventRec // the latest lifecycle events, oldest first
}

type series struct {
	lastAt        int64 // heartbeat time of the last one counted
	rps, rss      []float64
	errors        uint64
	gcCycles      uint64
	gcPauseSecs   float64
	cpuSecs       float64
	lastSampledAt time.Time
}

const maxEvents = 50

func newSampler(size int) *sampler { return &sampler{size: size, byPid: map[int]*series{}} }

// sample counts the heartbeats of ws not counted yet and forgets workers no
// longer in ws.
func (sp *sampler) sample(ws []master.WorkerInfo, now time.Time) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	seen := make(map[int]bool, len(ws))
	for _, w := range ws {
		seen[w.Pid] = true
		se := sp.byPid[w.Pid]
		if se == nil {
			se = &series{}
			sp.byPid[w.Pid] = se
		}
		se.lastSampledAt = now
		hb := w.Heartbeat
		if hb.At == 0 || hb.At == se.lastAt {
			continue
		}
		se.lastAt = hb.At
		se.errors += hb.Errors
		se.gcCycles += hb.GCCycles
		se.gcPauseSecs += hb.GCPause.Seconds()
		se.cpuSecs += hb.CPU / 100 * hb.Cycle.Seconds()
		se.rps = appendCapped(se.rps, hb.RPS, sp.size)
		se.rss = appendCapped(se.rss, float64(hb.RSS), sp.size)
	}
	for pid := range sp.byPid {
		if !seen[pid] {
			delete(sp.byPid, pid)
		}
	}
}

func appendCapped(s []float64, v float64, n int) []float64 {
	s = append(s, v)
	if len(s) > n {
		s = slices.Delete(s, 0, len(s)-n)
	}
	return s
}

func (sp *sampler) event(e master.Event) {
	sp.mu.Lock()
	sp.recent = appendCappedEvents(sp.recent, eventView(e))
	sp.mu.Unlock()
}

func appendCappedEvents(s []eventRec, e eventRec) []eventRec {
	s = append(s, e)
	if len(s) > maxEvents {
		s = slices.Delete(s, 0, len(s)-maxEvents)
	}
	return s
}

func (sp *sampler) events() []eventRec {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]eventRec{}, sp.recent...)
}

// workers returns the views of ws with their histories and totals.
func (sp *sampler) workers(ws []master.WorkerInfo, now time.Time) []workerView {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	out := make([]workerView, len(ws))
	for i, w := range ws {
		v := heartbeatView(w)
		v.Uptime = now.Sub(w.Started).Seconds()
		if !w.LastHeartbeat.IsZero() {
			v.HeartbeatAge = now.Sub(w.LastHeartbeat).Seconds()
		}
		if se := sp.byPid[w.Pid]; se != nil {
			v.ErrorsTotal, v.GCCyclesTotal = se.errors, se.gcCycles
			v.History = &history{RPS: append([]float64{}, se.rps...), RSS: append([]float64{}, se.rss...)}
		} else {
			v.History = &history{RPS: []float64{}, RSS: []float64{}}
		}
		out[i] = v
	}
	return out
}

// totals returns a copy of worker pid's running totals.
func (sp *sampler) totals(pid int) (series, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	se, ok := sp.byPid[pid]
	if !ok {
		return series{}, false
	}
	return *se, true
}

// workerView is a worker as the dashboard and the JSON API show it.
type workerView struct {
	Pid           int          `json:"pid"`
	Slot          int          `json:"slot"`
	State         master.State `json:"state"`
	Started       time.Time    `json:"started"`
	Uptime        float64      `json:"uptimeSeconds"`
	LastHeartbeat time.Time    `json:"lastHeartbeat"`
	HeartbeatAge  float64      `json:"heartbeatAgeSeconds"`
	RPS           float64      `json:"rps"`
	CPU           float64      `json:"cpuPercent"`
	RSS           uint64       `json:"rssBytes"`
	GCCycles      uint64       `json:"gcCycles"` // in the last heartbeat's cycle
	GCPauseMs     float64      `json:"gcPauseMs"`
	Goroutines    int64        `json:"goroutines"`
	OpenConns     int64        `json:"openConns"`
	TotalConns    uint64       `json:"totalConns"`
	Requests      uint64       `json:"requests"` // in the last heartbeat's cycle
	Errors        uint64       `json:"errors"`
	CycleSeconds  float64      `json:"cycleSeconds"`
	RequestsTotal uint64       `json:"requestsTotal"` // the worker's own count since it started (live)
	AcceptsTotal  uint64       `json:"acceptsTotal"`  // connections it accepted since it started (live)
	ErrorsTotal   uint64       `json:"errorsTotal"`
	GCCyclesTotal uint64       `json:"gcCyclesTotal"`
	Build         master.Build `json:"build"` // what the worker says of its build
	History       *history     `json:"history,omitempty"`
}

type history struct {
	RPS []float64 `json:"rps"` // requests/s per heartbeat, oldest first
	RSS []float64 `json:"rss"` // resident bytes per heartbeat
}

func heartbeatView(w master.WorkerInfo) workerView {
	hb := w.Heartbeat
	return workerView{Pid: w.Pid, Slot: w.Slot, State: w.State, Started: w.Started, LastHeartbeat: w.LastHeartbeat,
		Uptime: hb.Uptime.Seconds(), RPS: hb.RPS, CPU: hb.CPU, RSS: hb.RSS, GCCycles: hb.GCCycles,
		GCPauseMs: float64(hb.GCPause) / float64(time.Millisecond), Goroutines: hb.Goroutines,
		OpenConns: hb.OpenConns, TotalConns: hb.TotalConns, Requests: hb.Requests, Errors: hb.Errors,
		CycleSeconds: hb.Cycle.Seconds(), Build: w.Build, RequestsTotal: w.Requests, AcceptsTotal: w.Accepts}
}

// eventRec is a lifecycle event as the dashboard shows it.
type eventRec struct {
	Name  string    `json:"name"`
	Pid   int       `json:"pid,omitempty"`
	Slot  int       `json:"slot,omitempty"`
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

func eventView(e master.Event) eventRec {
	r := eventRec{Name: e.Name(), Pid: e.Pid, Slot: e.Slot, Time: e.Time}
	if e.Err != nil {
		r.Error = e.Err.Error()
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	return r
}

// cacheView is what the dashboard shows of a cache: CacheInfo, whose JSON
// carries its hit ratio.
type cacheView = CacheInfo

// overview is everything the dashboard shows, in one document.
type overview struct {
	Time          time.Time       `json:"time"`
	MasterPid     int             `json:"masterPid"`
	MasterBuild   build.Info      `json:"masterBuild"` // Options.Build
	ECV           ECVState        `json:"ecv"`
	Paths         ecvPaths        `json:"paths"`
	Workers       []workerView    `json:"workers"`
	Caches        []cacheView     `json:"caches"`
	Events        []eventRec      `json:"events"`
	Profiles      bool            `json:"profiles"`          // per-worker profiles are reachable
	TokenRequired bool            `json:"tokenRequired"`     // the guarded routes need the bearer token
	Persist       *PersistInfo    `json:"persist,omitempty"` // nil: no persistence
	Upgrade       *UpgradeInfo    `json:"upgrade,omitempty"` // the last in-place upgrade; nil: none
	Scaling       *master.Scaling `json:"scaling,omitempty"` // target, kept workers, ceiling; nil: the source cannot scale
}

type ecvPaths struct {
	Root     string `json:"root"`
	MarkUp   string `json:"markUp"`
	MarkDown string `json:"markDown"`
}

func (s *Server) overview() overview {
	now := time.Now()
	o := overview{Time: now, MasterPid: os.Getpid(), MasterBuild: s.opts.Build, ECV: s.ecv.State(),
		Paths:   ecvPaths{Root: s.opts.ECV.Root, MarkUp: s.opts.ECV.MarkUp, MarkDown: s.opts.ECV.MarkDown},
		Workers: s.samp.workers(s.src.Workers(), now), Caches: s.caches(), Events: s.samp.events(),
		Profiles: s.opts.ProfileDir != "", TokenRequired: s.opts.Token != ""}
	if ps, ok := s.src.(PersistSource); ok {
		if pi, ok := ps.Persist(); ok {
			o.Persist = &pi
		}
	}
	if us, ok := s.src.(UpgradeSource); ok {
		if u := us.UpgradeState(); u.State != "" {
			o.Upgrade = &u
		}
	}
	if ss, ok := s.src.(ScaleSource); ok {
		sc := ss.Scaling()
		o.Scaling = &sc
	}
	return o
}

// sampleLoop samples the workers every SampleInterval and pushes the
// overview to open pages.
func (s *Server) sampleLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.samp.sample(s.src.Workers(), now)
			if s.hub.count() == 0 {
				continue
			}
			if b, err := json.Marshal(s.overview()); err == nil {
				s.hub.publish("snapshot", b)
			}
		}
	}
}
