package monitor

import (
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry returns the server's own registry (never the global one, so
// that two servers in one process, as in tests, do not collide): the
// master's Go and process collectors and the cluster collector.
func (s *Server) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&clusterCollector{s: s},
	)
	return reg
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: nil, ErrorHandling: promhttp.ContinueOnError})
}

// clusterCollector exports the workers (from their latest heartbeats and the
// monitor's running totals), the ECV, the caches and the source's extra
// metrics. It is an unchecked collector: the set of label values changes as
// workers come and go.
type clusterCollector struct{ s *Server }

// Describe sends nothing: the collector is unchecked.
func (c *clusterCollector) Describe(chan<- *prometheus.Desc) {}

var (
	workerLabels = []string{"slot", "pid"}

	descWorkers      = prometheus.NewDesc("cluster2_workers", "Workers by state.", []string{"state"}, nil)
	descUp           = prometheus.NewDesc("cluster2_worker_up", "1 for every live worker, with its state.", []string{"slot", "pid", "state"}, nil)
	descUptime       = prometheus.NewDesc("cluster2_worker_uptime_seconds", "Time since the worker started.", workerLabels, nil)
	descCPU          = prometheus.NewDesc("cluster2_worker_cpu_percent", "CPU use in the last heartbeat cycle, percent of one core.", workerLabels, nil)
	descCPUSecs      = prometheus.NewDesc("cluster2_worker_cpu_seconds_total", "CPU time, summed from heartbeats since the monitor saw the worker.", workerLabels, nil)
	descRSS          = prometheus.NewDesc("cluster2_worker_resident_memory_bytes", "Resident memory.", workerLabels, nil)
	descRPS          = prometheus.NewDesc("cluster2_worker_requests_per_second", "Requests per second in the last heartbeat cycle.", workerLabels, nil)
	descRequests     = prometheus.NewDesc("cluster2_worker_requests_total", "Requests completed since the worker started (its own count, read live from its control block).", workerLabels, nil)
	descAccepts      = prometheus.NewDesc("cluster2_worker_accepts_total", "Connections the worker accepted on the shared socket since it started (its own count, read live from its control block).", workerLabels, nil)
	descErrors       = prometheus.NewDesc("cluster2_worker_errors_total", "Handler panics and reported errors, summed from heartbeats.", workerLabels, nil)
	descOpenConns    = prometheus.NewDesc("cluster2_worker_open_connections", "Connections open now.", workerLabels, nil)
	descConns        = prometheus.NewDesc("cluster2_worker_connections_total", "Connections accepted since the worker started, as of its last heartbeat (cluster2_worker_accepts_total is the same count, live).", workerLabels, nil)
	descGoroutines   = prometheus.NewDesc("cluster2_worker_goroutines", "Goroutines now.", workerLabels, nil)
	descHung         = prometheus.NewDesc("cluster2_worker_hung_requests_total", "Requests that passed the server's RequestTimeout (their handler still running), since the worker started.", workerLabels, nil)
	descReqLimit     = prometheus.NewDesc("cluster2_worker_request_limit", "The requests after which the worker is recycled (MaxRequests plus its jitter); absent without MaxRequests.", workerLabels, nil)
	descGCCycles     = prometheus.NewDesc("cluster2_worker_gc_cycles_total", "GC cycles, summed from heartbeats.", workerLabels, nil)
	descGCPause      = prometheus.NewDesc("cluster2_worker_gc_pause_seconds_total", "Stop-the-world GC pause time, summed from heartbeats (approximate).", workerLabels, nil)
	descHBAge        = prometheus.NewDesc("cluster2_worker_heartbeat_age_seconds", "Time since the worker's last heartbeat.", workerLabels, nil)
	descBuild        = prometheus.NewDesc("cluster2_build_info", "1 for the master and every live worker, with its build: the application's version, the short VCS revision, the Go version.", []string{"role", "pid", "slot", "version", "revision", "goversion"}, nil)
	descECVUp        = prometheus.NewDesc("cluster2_ecv_up", "1 when the ECV answers up.", nil, nil)
	descECVMarked    = prometheus.NewDesc("cluster2_ecv_marked_down", "1 when an operator marked the cluster down.", nil, nil)
	descCacheEntries = prometheus.NewDesc("cluster2_cache_entries", "Live entries.", []string{"cache"}, nil)
	descCacheBytes   = prometheus.NewDesc("cluster2_cache_bytes", "Bytes the entries take in the arena.", []string{"cache"}, nil)
	descCacheHits    = prometheus.NewDesc("cluster2_cache_hits_total", "Lookups that found a value.", []string{"cache"}, nil)
	descCacheMisses  = prometheus.NewDesc("cluster2_cache_misses_total", "Lookups that did not.", []string{"cache"}, nil)
	descCacheLoads   = prometheus.NewDesc("cluster2_cache_loads_total", "Loader runs that stored a value.", []string{"cache"}, nil)
	descCacheLoadErr = prometheus.NewDesc("cluster2_cache_load_errors_total", "Loader runs that failed.", []string{"cache"}, nil)
	descCacheEvict   = prometheus.NewDesc("cluster2_cache_evictions_total", "Entries dropped to make room.", []string{"cache"}, nil)
	descCacheRatio   = prometheus.NewDesc("cluster2_cache_hit_ratio", "Hits/(hits+misses) since the cache space was set up (0 before any lookup).", []string{"cache"}, nil)
	descCacheExpire  = prometheus.NewDesc("cluster2_cache_expirations_total", "Entries dropped because their time ran out.", []string{"cache"}, nil)
	descCacheCounter = prometheus.NewDesc("cluster2_cache_counter_ops_total", "Add calls that changed a counter.", []string{"cache"}, nil)
	descCacheCASFail = prometheus.NewDesc("cluster2_cache_cas_failures_total", "CompareAndSwap calls whose old value did not match.", []string{"cache"}, nil)
	descCacheTagInv  = prometheus.NewDesc("cluster2_cache_tag_invalidations_total", "InvalidateTag calls.", []string{"cache"}, nil)
	descCacheClears  = prometheus.NewDesc("cluster2_cache_clears_total", "Clear calls.", []string{"cache"}, nil)
	descCacheStale   = prometheus.NewDesc("cluster2_cache_stale_serves_total", "Expired values served while a load went on.", []string{"cache"}, nil)
	descCacheFailOK  = prometheus.NewDesc("cluster2_cache_failsafe_serves_total", "Expired values served in place of a loader's error or timeout.", []string{"cache"}, nil)
	descCacheRefresh = prometheus.NewDesc("cluster2_cache_refreshes_total", "Background loads started (stale-while-revalidate, refresh ahead).", []string{"cache"}, nil)
	descCacheNegHits = prometheus.NewDesc("cluster2_cache_negative_hits_total", "Gets answered not found from the cache.", []string{"cache"}, nil)
)

// Collect sends the current figures.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ws := s.src.Workers()
	byState := map[string]int{}
	for _, w := range ws {
		byState[w.State.String()]++
	}
	for _, st := range []string{"forked", "warming", "active", "paused", "old"} {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(byState[st]), st)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	now := time.Now()
	mb := c.s.opts.Build
	gauge(descBuild, 1, "master", strconv.Itoa(os.Getpid()), "0", mb.Version, mb.ShortRevision(), mb.GoVersion)
	for _, w := range ws {
		slot, pid := strconv.Itoa(w.Slot), strconv.Itoa(w.Pid)
		hb := w.Heartbeat
		gauge(descBuild, 1, "worker", pid, slot, w.Build.Version, w.Build.Revision, w.Build.GoVersion)
		gauge(descUp, 1, slot, pid, w.State.String())
		gauge(descUptime, now.Sub(w.Started).Seconds(), slot, pid)
		gauge(descCPU, hb.CPU, slot, pid)
		gauge(descRSS, float64(hb.RSS), slot, pid)
		gauge(descRPS, hb.RPS, slot, pid)
		gauge(descOpenConns, float64(hb.OpenConns), slot, pid)
		counter(descConns, float64(hb.TotalConns), slot, pid)
		counter(descAccepts, float64(w.Accepts), slot, pid)
		counter(descRequests, float64(w.Requests), slot, pid)
		gauge(descGoroutines, float64(hb.Goroutines), slot, pid)
		counter(descHung, float64(w.HungRequests), slot, pid)
		if w.RequestLimit > 0 {
			gauge(descReqLimit, float64(w.RequestLimit), slot, pid)
		}
		if !w.LastHeartbeat.IsZero() {
			gauge(descHBAge, now.Sub(w.LastHeartbeat).Seconds(), slot, pid)
		}
		if t, ok := s.samp.totals(w.Pid); ok {
			counter(descErrors, float64(t.errors), slot, pid)
			counter(descGCCycles, float64(t.gcCycles), slot, pid)
			counter(descGCPause, t.gcPauseSecs, slot, pid)
			counter(descCPUSecs, t.cpuSecs, slot, pid)
		}
	}
	e := s.ecv.State()
	gauge(descECVUp, b2f(e.Up))
	gauge(descECVMarked, b2f(e.MarkedDown))
	for _, cv := range s.caches() {
		n := cv.Name
		gauge(descCacheEntries, float64(cv.Entries), n)
		gauge(descCacheBytes, float64(cv.Bytes), n)
		counter(descCacheHits, float64(cv.Hits), n)
		counter(descCacheMisses, float64(cv.Misses), n)
		counter(descCacheLoads, float64(cv.Loads), n)
		counter(descCacheLoadErr, float64(cv.LoadErrors), n)
		counter(descCacheEvict, float64(cv.Evictions), n)
		gauge(descCacheRatio, cv.HitRatio(), n)
		counter(descCacheExpire, float64(cv.Expirations), n)
		counter(descCacheCounter, float64(cv.CounterOps), n)
		counter(descCacheCASFail, float64(cv.CASFailures), n)
		counter(descCacheTagInv, float64(cv.TagInvalidations), n)
		counter(descCacheClears, float64(cv.Clears), n)
		counter(descCacheStale, float64(cv.StaleServes), n)
		counter(descCacheFailOK, float64(cv.FailSafeServes), n)
		counter(descCacheRefresh, float64(cv.Refreshes), n)
		counter(descCacheNegHits, float64(cv.NegativeHits), n)
	}
	if ms, ok := s.src.(MetricSource); ok {
		for _, m := range ms.Metrics() {
			names := make([]string, 0, len(m.Labels))
			for k := range m.Labels {
				names = append(names, k)
			}
			sort.Strings(names)
			values := make([]string, len(names))
			for i, k := range names {
				values[i] = m.Labels[k]
			}
			vt := prometheus.GaugeValue
			if m.Counter {
				vt = prometheus.CounterValue
			}
			d := prometheus.NewDesc(m.Name, m.Help, names, nil)
			if pm, err := prometheus.NewConstMetric(d, vt, m.Value, values...); err == nil {
				ch <- pm
			} else {
				ch <- prometheus.NewInvalidMetric(d, err)
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
