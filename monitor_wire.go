package cluster2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/status"
)

// ECVConfig configures the ECV; see monitor.ECVOptions. In monitor mode a
// CheckURL that is a path ("/health") is fetched from the cluster's own
// listening address.
type ECVConfig = monitor.ECVOptions

// MonitorConfig configures the master's monitor server (package monitor),
// served on Config.MonitorAddr: ECV, /livez, the /debug dashboard, /deps,
// /status, /metrics and the workers' profiles. The zero value serves it with
// a control-mode ECV on /ecv and profiles on.
type MonitorConfig struct {
	// Disabled turns the monitor server off (and the workers' profiling
	// sockets with it).
	Disabled bool

	// Token is the bearer token the monitor's guarded routes (actions,
	// profiles, the cache key feed, /status) require, wherever MonitorAddr
	// is, loopback included; see monitor.Options.Token. Default "": on
	// loopback any local user may use them (the monitor warns at start),
	// beyond loopback they are off.
	Token string

	// AllowedHosts are the host names the monitor answers to in the Host
	// header besides loopback names and addresses (against DNS rebinding);
	// see monitor.Options.AllowedHosts. Default none.
	AllowedHosts []string

	// ECV configures the ECV routes and rules.
	ECV ECVConfig

	// AgentAddr, when set, serves an HAProxy agent-check responder on that
	// TCP address. Default "": none.
	AgentAddr string

	// NoProfiles stops the workers from serving their profiles to the
	// monitor (each worker otherwise listens on a unix socket in a private
	// 0700 directory the master creates and removes).
	NoProfiles bool
}

// monitorRuntime is the monitor in the master. Its methods accept a nil
// receiver (monitor disabled or failed to start).
type monitorRuntime struct {
	srv       *monitor.Server
	src       *monitorSource
	dir       string // the workers' profiling sockets; "" without profiles
	log       *slog.Logger
	closeOnce sync.Once
}

// startMonitor starts the monitor before the first worker, so that the ECV
// answers down while the workers warm up. A monitor that cannot start (a busy
// port, most often) is Listen's error: the monitor is what load balancers
// check, and a cluster running without it would be out of rotation with
// nothing saying why. The caller decides (another address, or
// Monitor.Disabled), as the original's users asked (ql-io/cluster2 #52).
//
// The monitor joins events (before it serves: an operator's mark may come at
// once), and its marks go to events' subscribers like every other event.
func startMonitor(c Config, appAddr net.Addr, a *shm.Arena, in *instances, events *lifecycle, adopt *monitorParts) (*monitorRuntime, error) {
	mc := c.Monitor
	if mc.Disabled {
		if adopt != nil { // the previous image served one: this configuration does not
			closeListeners(adopt.ln, adopt.agent)
		}
		return nil, nil
	}
	r := &monitorRuntime{src: &monitorSource{arena: a, em: in.em, reg: in.reg, sp: in.sp, br: in.br,
		persist: c.Cache.Enabled && c.Cache.DataDir != "", downWhileFailing: c.Cache.DownWhilePersistFailing}, log: c.Logger}
	ecv := mc.ECV
	if ecv.Mode == monitor.ModeMonitor && strings.HasPrefix(ecv.CheckURL, "/") {
		ecv.CheckURL = "http://" + loopbackOf(appAddr) + ecv.CheckURL
	}
	var ln, agent net.Listener
	if adopt != nil {
		ln, agent, r.dir = adopt.ln, adopt.agent, adopt.dir // the previous image's: the workers' sockets are there
	}
	if !mc.NoProfiles && r.dir == "" {
		// What a master killed with SIGKILL left (only dead pids' dirs).
		for _, d := range monitor.RemoveStaleProfileDirs() {
			c.Logger.Info("cluster2: monitor: removed a dead master's profile dir", "dir", d)
		}
		dir, err := monitor.MakeProfileDir()
		if err != nil {
			c.Logger.Error("cluster2: monitor: profiles are off", "err", err)
		}
		r.dir = dir
	}
	srv, err := monitor.New(r.src, monitor.Options{
		Addr: c.MonitorAddr, Token: mc.Token, AllowedHosts: mc.AllowedHosts, ECV: ecv, AgentAddr: mc.AgentAddr, ExpectedWorkers: c.Workers,
		ProfileDir: r.dir, Logger: c.Logger, OnEvent: events.deliver, Listener: ln, AgentListener: agent, Build: buildInfo(c),
	})
	if err == nil {
		r.srv = srv
		events.monitor = r
		if adopt != nil {
			// An adopting image serves once the master is attached and up
			// (serveAdopted): before, its ECV would answer down for a
			// cluster that never left rotation. Meanwhile the handed-over
			// sockets queue the connections.
			if adopt.markedDown {
				err = srv.ECV().MarkDown()
			}
		} else if err = srv.Start(); err != nil {
			events.monitor = nil
			srv.Close()
		}
	}
	if err != nil {
		r.removeDir()
		return nil, fmt.Errorf("cluster2: monitor on %s (Config.MonitorAddr; Monitor.Disabled turns it off): %w", c.MonitorAddr, err)
	}
	return r, nil
}

// monitorParts are what the monitor of an adopting master takes over from
// the previous image: its sockets (agent nil without an agent-check) and
// the workers' profiling directory ("" without profiles).
type monitorParts struct {
	ln, agent  net.Listener
	dir        string
	markedDown bool // an operator had marked the ECV down
}

// serveAdopted starts serving an adopting image's monitor, once its master
// is attached and up (see startMonitor).
func (r *monitorRuntime) serveAdopted() error {
	if r == nil {
		return nil
	}
	return r.srv.Start()
}

func closeListeners(ls ...net.Listener) {
	for _, l := range ls {
		if l != nil {
			l.Close()
		}
	}
}

// loopbackOf returns "host:port" to reach addr from this machine.
func loopbackOf(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok && (ta.IP == nil || ta.IP.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return addr.String()
}

// event is the monitor's subscription to the lifecycle (see lifecycle): the
// server (the ECV is driven by EventUp and EventDown; the dashboard shows
// every event). The workers of the start it asks the master for, which has
// them from their forked event on (master.Start returns once they are
// spawned; WaitUp waits until they are up).
func (r *monitorRuntime) event(e Event) {
	if r == nil {
		return
	}
	r.srv.HandleEvent(e)
}

// dropProfileSocket removes a dead worker's profiling socket.
func (r *monitorRuntime) dropProfileSocket(e Event) {
	if r != nil && r.dir != "" && e.Kind == master.EventDied {
		os.Remove(monitor.ProfileSocket(r.dir, e.Pid))
	}
}

// workerEnv returns the workers' environment: the profiling directory added
// to this process's, or nil (the master's default) without profiles.
func (r *monitorRuntime) workerEnv() []string {
	if r == nil || r.dir == "" {
		return nil
	}
	return append(os.Environ(), monitor.ProfileDirEnv+"="+r.dir)
}

// attach hands the master to the monitor as soon as Start returned (its
// workers forked, not up yet), and closes the monitor
// once the master has stopped and every worker is gone.
func (r *monitorRuntime) attach(m *master.Master) {
	if r == nil {
		return
	}
	r.src.m.Store(m)
	go func() {
		<-m.Done()
		r.close()
	}()
}

func (r *monitorRuntime) close() {
	if r == nil {
		return
	}
	r.closeOnce.Do(func() {
		r.srv.Close()
		r.removeDir()
	})
}

func (r *monitorRuntime) removeDir() {
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// MonitorAddr returns the address the monitor server is bound to, in the
// master; nil in a worker, or when the monitor is disabled or did not
// start.
func (c *Cluster) MonitorAddr() net.Addr {
	if c.mon == nil {
		return nil
	}
	return c.mon.srv.Addr()
}

// serveWorkerProfiles serves this worker's profiles on its socket in the
// directory its master made, if the master made one. Listen calls it before
// the worker's warm-up, so that the socket is there once the worker listens
// (the monitor may ask for it at once). The socket lives as long as the
// process; the master removes it when the worker dies.
func serveWorkerProfiles(c Config) {
	dir := os.Getenv(monitor.ProfileDirEnv)
	if dir == "" {
		return
	}
	if _, err := monitor.ServeProfiles(dir); err != nil {
		c.Logger.Warn("cluster2: worker profiles are off", "err", err)
	}
}

// monitorSource is the monitor's view of the master (set once Start
// returned, before the workers are up: nil only while the auxiliary
// processes start, when there is no worker yet) and of the Cluster's instances: the shared caches, the status
// registry and the emitter it was handed (never the package defaults).
type monitorSource struct {
	arena            *shm.Arena
	em               *emitter.Emitter
	reg              *status.Registry
	sp               *cache.Space   // nil without the cache
	br               *bridge.Bridge // the host's bridge to Redis; nil without Config.Cache.Redis
	persist          bool           // the cluster has a data directory
	downWhileFailing bool           // Cache.DownWhilePersistFailing
	m                atomic.Pointer[master.Master]
	cluster          atomic.Pointer[Cluster] // for the upgrade action, once Listen has made it
}

func (s *monitorSource) master() (*master.Master, error) {
	m := s.m.Load()
	if m == nil {
		return nil, fmt.Errorf("%w: the cluster is still starting", master.ErrWrongState)
	}
	return m, nil
}

func (s *monitorSource) Workers() []master.WorkerInfo {
	if m := s.m.Load(); m != nil {
		return m.Workers()
	}
	return nil // no worker is spawned before Start returns
}

func (s *monitorSource) Pause(ctx context.Context, pid int) error {
	m, err := s.master()
	if err != nil {
		return err
	}
	return m.Pause(ctx, pid)
}

func (s *monitorSource) Resume(ctx context.Context, pid int) error {
	m, err := s.master()
	if err != nil {
		return err
	}
	return m.Resume(ctx, pid)
}

func (s *monitorSource) Replace(pid int) error {
	m, err := s.master()
	if err != nil {
		return err
	}
	return m.Replace(pid)
}

// PrepareUpgrade is the monitor's upgrade action (monitor.UpgradeSource).
func (s *monitorSource) PrepareUpgrade(ctx context.Context) (func() error, error) {
	cl := s.cluster.Load()
	if cl == nil {
		return nil, fmt.Errorf("%w: the cluster is still starting", master.ErrWrongState)
	}
	return cl.prepareUpgrade(ctx)
}

// UpgradeState is the dashboard's view of the last in-place upgrade
// (monitor.UpgradeSource).
func (s *monitorSource) UpgradeState() monitor.UpgradeInfo {
	if cl := s.cluster.Load(); cl != nil {
		return cl.upgrade.status()
	}
	return monitor.UpgradeInfo{}
}

// Scale is the monitor's scale action (monitor.ScaleSource): the Cluster's
// Scale, which refuses during an in-place upgrade.
func (s *monitorSource) Scale(ctx context.Context, n int) error {
	cl := s.cluster.Load()
	if cl == nil {
		return fmt.Errorf("%w: the cluster is still starting", master.ErrWrongState)
	}
	return cl.Scale(ctx, n)
}

// Scaling is the dashboard's and the agent-check's view of the worker count
// (monitor.ScaleSource); zero before the master is attached.
func (s *monitorSource) Scaling() master.Scaling {
	if m := s.m.Load(); m != nil {
		return m.Scaling()
	}
	return master.Scaling{}
}

func (s *monitorSource) RollingRestart(ctx context.Context) error {
	m, err := s.master()
	if err != nil {
		return err
	}
	return m.RollingRestart(ctx)
}

// Caches reads the figures of every cache of the master's space.
func (s *monitorSource) Caches() []monitor.CacheInfo {
	sp := s.sp
	if sp == nil {
		return nil
	}
	var out []monitor.CacheInfo
	for _, name := range sp.Names() {
		c, err := s.open(sp, name)
		if err != nil {
			continue
		}
		st, o := c.Stats(), c.Options()
		out = append(out, monitor.CacheInfo{Name: name, Persist: o.Persist, Expire: o.Expire, Hits: st.Hits,
			Misses: st.Misses, Loads: st.Loads, LoadErrors: st.LoadErrors, Evictions: st.Evictions,
			Expirations: st.Expirations, Entries: st.Entries, Bytes: st.Bytes, CounterOps: st.CounterOps,
			CASFailures: st.CASFailures, TagInvalidations: st.TagInvalidations, Clears: st.Clears,
			StaleServes: st.StaleServes, FailSafeServes: st.FailSafeServes, Refreshes: st.Refreshes, NegativeHits: st.NegativeHits})
	}
	return out
}

// open returns a handle of its own on an existing cache (cache.Space.Use);
// it holds nothing that needs closing.
func (s *monitorSource) open(sp *cache.Space, name string) (*cache.Cache, error) {
	o, ok := sp.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("cache %q: %w", name, monitor.ErrNoCache)
	}
	return sp.Use(name, o)
}

// WatchCache follows every key of the named cache.
func (s *monitorSource) WatchCache(name string, fn func(monitor.KeyChange)) (func(), error) {
	sp := s.sp
	if sp == nil {
		return nil, fmt.Errorf("cache %q: %w (the shared cache is off)", name, monitor.ErrNoCache)
	}
	c, err := s.open(sp, name)
	if err != nil {
		return nil, err
	}
	w := c.Watch("", func(ch cache.Change) {
		fn(monitor.KeyChange{Cache: ch.Cache, Key: ch.Key, Op: ch.Op.String(), Value: string(ch.Value), Time: time.Now()})
	})
	return func() { c.Unwatch(w) }, nil
}

// Persist reads the persistence state from the arena (the log writer may be
// a cache-manager process).
func (s *monitorSource) Persist() (monitor.PersistInfo, bool) {
	sp := s.sp
	if !s.persist || sp == nil {
		return monitor.PersistInfo{}, false
	}
	ps := sp.Journal().Stats()
	pi := monitor.PersistInfo{Attached: ps.Attached, Failing: ps.Failing != nil, Since: ps.FailingSince,
		Failures: ps.Failures, LagBytes: ps.Lag, DownWhileFailing: s.downWhileFailing}
	if ps.Failing != nil {
		pi.Error = ps.Failing.Error()
	}
	return pi, true
}

// Statuses aggregates every registered status (package status): name →
// pid → the view's value, or the error text of a process that gave none.
// With a data directory, "persist" (under the master's pid) is the state of
// the log (monitor.PersistInfo); with the cache on, "caches" (under the
// master's pid) is every cache's figures (monitor.CacheInfo, as /metrics
// and the dashboard have them); with Config.Cache.Redis, "bridge" (under the
// master's pid) is the bridge's state (monitor.BridgeInfo).
func (s *monitorSource) Statuses(ctx context.Context) (map[string]map[int]any, error) {
	reg := s.reg
	out := map[string]map[int]any{}
	if pi, ok := s.Persist(); ok {
		out["persist"] = map[int]any{os.Getpid(): pi}
	}
	if cs := s.Caches(); cs != nil {
		out["caches"] = map[int]any{os.Getpid(): cs}
	}
	if bi, ok := s.Bridge(); ok {
		out["bridge"] = map[int]any{os.Getpid(): bi}
	}
	for _, name := range reg.Names() {
		entries, err := reg.Get(ctx, name)
		if err != nil {
			out[name] = map[int]any{0: err.Error()}
			continue
		}
		byPid := make(map[int]any, len(entries))
		for _, e := range entries {
			if e.Err != nil {
				byPid[e.Pid] = map[string]string{"error": e.Err.Error()}
			} else {
				byPid[e.Pid] = e.Status
			}
		}
		out[name] = byPid
	}
	return out, nil
}

// Bridge reports the host's bridge to Redis: its state and counters, and
// the stale and fail-safe serves of its distributed caches.
func (s *monitorSource) Bridge() (monitor.BridgeInfo, bool) {
	if s.br == nil {
		return monitor.BridgeInfo{}, false
	}
	st := s.br.Stats()
	names := s.br.Config().Caches
	bi := monitor.BridgeInfo{State: string(st.State), Since: st.Since, Addr: st.Addr, Error: st.Error,
		Caches: append([]string{}, names...), Invalidations: st.Invalidations, Flushes: st.Flushes,
		Reconnects: st.Reconnects, Messages: st.Messages}
	for _, ci := range s.Caches() {
		if slices.Contains(names, ci.Name) {
			bi.StaleServes += ci.StaleServes + ci.FailSafeServes
		}
	}
	return bi, true
}

// bridgeMetrics are the bridge's figures for /metrics (none without one).
func (s *monitorSource) bridgeMetrics() []monitor.Metric {
	bi, ok := s.Bridge()
	if !ok {
		return nil
	}
	up := 0.0
	if bi.State == "up" {
		up = 1
	}
	return []monitor.Metric{
		{Name: "cluster2_bridge_up", Help: "1 while the bridge's tracking connection to Redis is up.", Value: up},
		{Name: "cluster2_bridge_state_seconds", Help: "Time since the bridge's state (up, down, connecting) began.", Value: time.Since(bi.Since).Seconds()},
		{Name: "cluster2_bridge_invalidations_total", Help: "Keys Redis invalidated (the host's own writes included).", Value: float64(bi.Invalidations), Counter: true},
		{Name: "cluster2_bridge_flushes_total", Help: "Times every distributed entry was marked stale (connection lost or made, FLUSHALL).", Value: float64(bi.Flushes), Counter: true},
		{Name: "cluster2_bridge_reconnects_total", Help: "Connections to Redis made after the first.", Value: float64(bi.Reconnects), Counter: true},
		{Name: "cluster2_bridge_messages_total", Help: "Pub/sub messages received from other hosts.", Value: float64(bi.Messages), Counter: true},
		{Name: "cluster2_bridge_stale_serves_total", Help: "Stale and fail-safe values the distributed caches served.", Value: float64(bi.StaleServes), Counter: true},
	}
}

// Metrics adds the arena's figures, the cache space's persistence
// (write-ahead log) figures (zero without a log writer) and the bridge's
// (cluster2_bridge_*, with Config.Cache.Redis).
func (s *monitorSource) Metrics() []monitor.Metric {
	a := s.arena
	var ps persist.Stats
	var repairs uint64
	if sp := s.sp; sp != nil {
		ps, repairs = sp.Journal().Stats(), sp.Repairs()
	}
	attached, failing := 0.0, 0.0
	if ps.Attached {
		attached = 1
	}
	var errno syscall.Errno
	if ps.Failing != nil {
		failing = 1
		errors.As(ps.Failing, &errno)
	}
	es := s.em.Stats()
	out := s.bridgeMetrics()
	if m := s.m.Load(); m != nil {
		for r, n := range m.Replacements() {
			out = append(out, monitor.Metric{Name: "cluster2_worker_replacements_total",
				Help:   "Workers replaced through the death queue (a successor up, the old one told to drain), by reason (the master's own rules: max-requests, hung-requests, should-kill, memory, nanny; or requested, rolling-restart, upgrade).",
				Labels: map[string]string{"reason": r.String()}, Value: float64(n), Counter: true})
		}
	}
	return append(out, []monitor.Metric{
		{Name: "cluster2_ring_frames_sent_total", Help: "Event frames the master wrote to the workers' rings.", Value: float64(es.Sent), Counter: true},
		{Name: "cluster2_ring_frames_received_total", Help: "Event frames the master read from the workers' rings.", Value: float64(es.Received), Counter: true},
		{Name: "cluster2_emitter_routed_total", Help: "Frames the master forwarded from one worker to another.", Value: float64(es.Routed), Counter: true},
		{Name: "cluster2_emitter_emitted_total", Help: "Emit calls in the master that succeeded.", Value: float64(es.Emitted), Counter: true},
		{Name: "cluster2_emitter_dropped_total", Help: "Event targets dropped (unknown or dead pid).", Value: float64(es.Dropped), Counter: true},
		{Name: "cluster2_emitter_published_total", Help: "Events to all hosts the master published to the backplane (its own and its workers').", Value: float64(es.Published), Counter: true},
		{Name: "cluster2_emitter_publish_failed_total", Help: "Events to all hosts that did not leave this host (no backplane, Redis down, too large).", Value: float64(es.PublishFailed), Counter: true},
		{Name: "cluster2_emitter_from_hosts_total", Help: "Events of other hosts the master received from the backplane.", Value: float64(es.FromHosts), Counter: true},
		{Name: "cluster2_emitter_echoes_total", Help: "This host's own events the backplane brought back (dropped by origin).", Value: float64(es.Echoes), Counter: true},
		{Name: "cluster2_arena_bytes", Help: "Size of the shared arena.", Value: float64(a.Size())},
		{Name: "cluster2_arena_free_bytes", Help: "Bytes of the shared arena not allocated yet.", Value: float64(a.Free())},
		{Name: "cluster2_cache_repairs_total", Help: "Cache shards repaired after a writer died inside them.", Value: float64(repairs), Counter: true},
		{Name: "cluster2_wal_attached", Help: "1 while a live process logs the persistent caches.", Value: attached},
		{Name: "cluster2_wal_records_total", Help: "Records appended to the write-ahead log.", Value: float64(ps.Records), Counter: true},
		{Name: "cluster2_wal_bytes_total", Help: "Bytes appended to the write-ahead log.", Value: float64(ps.Bytes), Counter: true},
		{Name: "cluster2_wal_fsyncs_total", Help: "fsyncs of the write-ahead log.", Value: float64(ps.Syncs), Counter: true},
		{Name: "cluster2_wal_fsync_seconds_total", Help: "Time spent in fsyncs of the write-ahead log.", Value: ps.SyncTime.Seconds(), Counter: true},
		{Name: "cluster2_wal_snapshots_total", Help: "Snapshots written.", Value: float64(ps.Snapshots), Counter: true},
		{Name: "cluster2_wal_journal_gaps_total", Help: "Times the journal lapped the log writer (each cost a snapshot).", Value: float64(ps.Gaps), Counter: true},
		{Name: "cluster2_wal_lag_bytes", Help: "Journal bytes not yet appended to the log.", Value: float64(ps.Lag)},
		{Name: "cluster2_persist_failing", Help: "1 while the write-ahead log cannot be written (Sets of persistent caches are refused).", Value: failing},
		{Name: "cluster2_persist_failing_errno", Help: "The errno of the current log failure (28: no space left on device); 0 when none.", Value: float64(errno)},
		{Name: "cluster2_persist_failures_total", Help: "Times the write-ahead log began failing.", Value: float64(ps.Failures), Counter: true},
		{Name: "cluster2_persist_gap_requests_total", Help: "Changes that could not be journaled (each covered by a snapshot).", Value: float64(ps.GapRequests), Counter: true},
	}...)
}
