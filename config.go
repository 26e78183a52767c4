package cluster2

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/worker"
)

// Heartbeat is what a worker reports every HeartbeatInterval; see
// worker.Heartbeat.
type Heartbeat = worker.Heartbeat

// ServerConfig holds the workers' limits against idle, slow and oversized
// clients, the drain's grace for idle keep-alive connections and the accept
// balance's switch; see worker.ServerConfig.
type ServerConfig = worker.ServerConfig

// CountRequest counts one request, of duration d, that a server run through
// Config.Serve completed in this worker (failed counts an error too): the
// workers' request metrics (/metrics' cluster2_worker_requests_total and
// requests per second, the dashboard, Heartbeat.Requests) count only what
// it is told for such a server. Call it from the server's handler or
// interceptor; it does nothing in the master or with Config.Handler, whose
// requests the worker counts itself. See worker.CountRequest.
func CountRequest(d time.Duration, failed bool) { worker.CountRequest(d, failed) }

// CacheMode says which process owns the shared cache's persistence; see
// CacheConfig.Mode.
type CacheMode string

// Cache modes of CacheConfig.Mode.
const (
	CacheStandalone CacheMode = "standalone" // a cache-manager process owns persistence
	CacheMaster     CacheMode = "master"     // the master owns persistence
)

// CacheConfig configures the shared cache. The cache package plugs into the
// arena Listen creates, which Config.ArenaSize sizes.
type CacheConfig struct {
	// Enabled turns the shared cache on.
	Enabled bool

	// Mode is CacheStandalone or CacheMaster. Default CacheMaster. It says
	// which process owns persistence (the caches themselves live in the
	// arena, read and written by every process): the master, or a
	// cache-manager process the master starts, and restarts if it dies. It
	// matters only with a DataDir.
	Mode CacheMode

	// DataDir is where persistent caches keep their data (a write-ahead log
	// and a snapshot, see package persist). Default "": no persistence.
	DataDir string

	// Durability is the default of persistent caches that choose none
	// (cache.Options.Durability). Default cache.DefaultDurability
	// (EverySecond).
	Durability cache.Durability

	// Salvage starts even when the log is damaged before its durable end, or
	// a segment, the snapshot or the checkpoint is missing: it keeps the log
	// up to the damage (or the gap) and moves the rest (the segments after
	// it, and the damaged segment's tail) into DataDir/salvaged-<time>/,
	// never deleting it, and logs what it moved (see persist.Options.Salvage).
	// Default false: Listen fails with the file and offset. A data directory
	// written by the release before checkpoints opens without it.
	Salvage bool

	// DownWhilePersistFailing takes the ECV down while the log writer
	// cannot write its log (a full disk, an I/O error): Sets of persistent
	// caches are refused then (cache.ErrPersistFailing), and a load balancer
	// may prefer another cluster. Default false: the ECV does not change;
	// /status, /metrics (cluster2_persist_failing) and the dashboard show
	// the failure either way, and the master logs it at ERROR.
	DownWhilePersistFailing bool

	// Redis connects the cluster to Redis, shared by the hosts of a fleet
	// (several clusters behind a load balancer): the caches named in
	// Redis.Caches are distributed (Redis is their second tier, every
	// host's writes invalidate every host's entries; see package bridge
	// and docs/cache.md, "Distributed caches"), and events can cross hosts.
	// The master holds the host's one tracking connection; every process
	// has a client for its misses and writes. Default: no Addr, no Redis.
	// Every other field's default is package bridge's (Namespace
	// "cluster2:", PingEvery 1 s, Timeout 500 ms; Logger: Config.Logger).
	// Redis.Caches needs Enabled; a distributed cache cannot be persistent.
	Redis RedisConfig
}

// RedisConfig is Config.Cache.Redis: package bridge's configuration (the
// address, the distributed caches, the namespace, the timeouts,
// LocalWrites).
type RedisConfig = bridge.Config

// Config configures Listen. The zero value, with a Handler, is a valid
// configuration: every zero field takes the default its doc names. Config is
// copied by Listen; it is not modified.
type Config struct {
	// Workers is the number of worker processes. Default runtime.NumCPU()
	// (master.DefaultWorkers); at most 1000 (master.MaxWorkers).
	Workers int

	// MaxWorkers is the ceiling of Cluster.Scale (the elastic worker
	// count; SIGTTIN, the monitor's scale action): the arena's process
	// table is sized for it when Listen makes the arena, so it cannot grow
	// later; Scale above it returns an error wrapping
	// master.ErrAboveCeiling. Each slot it reserves costs 704 bytes of the
	// arena (process table 128, supervision block 512, emitter entry 64):
	// the table has max(64, 2×MaxWorkers+8) slots, room for successors and
	// draining workers. A worker's event rings (2 × 256 KiB) are taken from
	// the arena the first time its slot is used, from what the cache left
	// (with the cache on, a quarter of the arena's free space): Listen
	// lowers MaxWorkers to the workers whose rings fit, with one
	// successor's (logged; Cluster.Scaling's Max is the ceiling in force):
	// about 30 workers in the default 64 MiB arena with the cache on;
	// raise ArenaSize for more. Default twice the larger of Workers and the
	// number of CPUs (master.DefaultMaxWorkers); at most 1000; below
	// Workers is an error.
	MaxWorkers int

	// Addr is the application's listening address. Default ":8080". When
	// the master was started with sockets (systemd's socket activation,
	// LISTEN_FDS), it serves the passed one on Addr instead of binding it
	// (see docs/runtime.md).
	Addr string

	// MonitorAddr is the monitor server's address (served by the master:
	// ECV, /livez, /debug, /deps, /status, /metrics; see package monitor).
	// Default "127.0.0.1:8081": loopback only. Beyond loopback, actions and
	// profiles need Monitor.Token. A busy address is Listen's error
	// (wrapping syscall.EADDRINUSE): load balancers check the monitor.
	MonitorAddr string

	// Monitor configures the monitor server: off, token, ECV, agent-check,
	// profiles.
	Monitor MonitorConfig

	// Handler serves requests in every worker with net/http, the default
	// server. Exactly one of Handler and Serve is set.
	Handler http.Handler

	// Serve, set instead of Handler, runs another server in every worker (a
	// grpc.Server, a fasthttp.Server, a custom protocol): it serves ln until
	// ln is closed, then returns; ctx is cancelled when the worker closes
	// ln. It is called on the private address for WarmUp, then on the
	// shared socket, and again after each resume, one call at a time. Warm-up,
	// heartbeats, pause, drain, the shared cache and the emitter work as
	// with Handler; NewServer, ConfigureApp and Server's limits are
	// net/http's (NewServer and ConfigureApp must be nil). The workers'
	// connections are counted in the heartbeats (/metrics, the dashboard);
	// their requests only when the server calls CountRequest. A Serve that
	// returns while its listener is open stops its worker (the master
	// replaces it). See worker.Config.Serve and docs/runtime.md, "Any
	// server".
	Serve func(ctx context.Context, ln net.Listener) error

	// Drain, required with Serve, drains a worker's server once the worker
	// closed its listener and Serve returned: it finishes the requests in
	// flight and closes the connections within ctx's deadline (the drain's:
	// the master's, or StopTimeout), e.g. grpc.Server.GracefulStop, then
	// Stop when ctx ends; fasthttp.Server.ShutdownWithContext. Then the
	// worker waits until the deadline for the connections to close and
	// closes the rest.
	Drain func(ctx context.Context) error

	// NewServer makes each worker's http.Server (the Node original's
	// createServer: TLS, timeouts). Server's limits fill the fields it leaves
	// zero. Default: a plain server.
	NewServer func(http.Handler) *http.Server

	// Server holds the workers' limits against idle, slow and oversized
	// clients: IdleTimeout 75 s, ReadHeaderTimeout 10 s, a body read
	// deadline of 60 s, MaxHeaderBytes 1 MiB, an error log (accept errors)
	// rate-limited to a line a second; and how long a draining worker
	// leaves an idle keep-alive connection open (1 s) while it answers
	// with "Connection: close"; and the accept balance (on unless
	// UnbalancedAccepts). Negative values turn a limit off. See
	// worker.ServerConfig and docs/runtime.md.
	Server ServerConfig

	// ConfigureApp runs in each worker before warm-up and may wrap or
	// replace the handler (net/http's: not with Serve). An error stops that
	// worker.
	ConfigureApp func(ctx context.Context, h http.Handler) (http.Handler, error)

	// WarmUp runs in each worker against its own handler (or its Serve)
	// served on a private loopback address, before the worker joins the
	// shared socket. An error keeps the worker out (it is reported, never
	// ignored). The private address serves plain HTTP, even when NewServer
	// sets up TLS.
	WarmUp func(ctx context.Context, addr string) error

	// HeartbeatInterval is the period of worker heartbeats. Default 5 s
	// (worker.DefaultHeartbeatInterval).
	HeartbeatInterval time.Duration

	// ShouldKill judges each heartbeat; true replaces the worker. Default:
	// master.DefaultShouldKill(MaxAge) (old, or bad GC).
	ShouldKill func(Heartbeat) bool

	// MaxAge is the uptime past which the default ShouldKill replaces a
	// worker. Default 72 h (master.DefaultMaxAge); negative: never.
	MaxAge time.Duration

	// NannyTolerance replaces a worker that sent no heartbeat for that long.
	// Default 3 min (master.DefaultNannyTolerance); negative disables the
	// nanny. Must exceed
	// HeartbeatInterval.
	NannyTolerance time.Duration

	// MemoryLimit replaces a worker whose resident memory exceeds it, in
	// bytes. Default 0: no limit.
	MemoryLimit uint64

	// MaxRequests recycles a worker once it served that many requests,
	// plus a jitter drawn per worker in [0, MaxRequestsJitter] (gunicorn's
	// max_requests and max_requests_jitter), through the death queue
	// (successor first, the old worker drains; the event "recycled" with
	// master.ReasonMaxRequests). Default 0: never; negative is an error.
	// See master.Config.MaxRequests.
	MaxRequests int

	// MaxRequestsJitter spreads the workers' request limits (see
	// MaxRequests). Default 0; negative, or without MaxRequests, is an
	// error.
	MaxRequestsJitter int

	// HungRequests replaces a worker once that many of its requests passed
	// Server.RequestTimeout within HungWindow (uWSGI's harakiri, gunicorn's
	// worker timeout; the event "recycled" with master.ReasonHungRequests).
	// Nothing is counted without a RequestTimeout. Default 3
	// (master.DefaultHungRequests); negative: never replaced for it.
	HungRequests int

	// HungWindow is HungRequests' window. Default 1 min
	// (master.DefaultHungWindow); negative is an error.
	HungWindow time.Duration

	// StopTimeout bounds a graceful stop: the master's, and a drain a worker
	// starts itself on SIGTERM (worker.Config.StopTimeout). Default 60 s
	// (worker.DefaultStopTimeout).
	StopTimeout time.Duration

	// ReplaceTimeout bounds each guarded step of a replacement (successor
	// ready; old worker drained before SIGTERM, and again before SIGKILL),
	// and every worker's warm-up, the initial workers' included: Listen
	// waits up to ReplaceTimeout for each initial worker to be warm and
	// listening, and tries ReplaceRetries more before it fails. The same
	// name, with the same meaning, in master.Config and worker.Config.
	// Default 60 s (worker.DefaultReplaceTimeout).
	ReplaceTimeout time.Duration

	// ReplaceRetries is how many more successors are tried after one fails.
	// Default 3 (master.DefaultReplaceRetries); negative: none.
	ReplaceRetries int

	// ArenaSize is the size of the shared arena in bytes: the process
	// table, supervision, the emitter's rings and the shared cache all live
	// in it. Default 64 MiB (shm.DefaultSize); at least 1 MiB.
	ArenaSize int64

	// Cache configures the shared cache.
	Cache CacheConfig

	// PidDir, when set, receives master.<pid>.pid and worker.<pid>.pid.
	// It is created 0700; Listen refuses, with an error wrapping
	// master.ErrPidDir, one that is a symlink, another user's, or writable
	// by group or others. Pid files are never written through a symlink,
	// and the files of dead pids (left by a master killed with SIGKILL) are
	// removed at the next start, never a live pid's. See master.Config.
	PidDir string

	// Executable is the path of the binary every child (workers, the cache
	// manager) is executed from. Default: the running executable's path,
	// resolved when the defaults are applied at start (master.DefaultExe:
	// os.Executable), so that after a deploy renames a new binary over it a
	// rolling restart (SIGHUP, Cluster.RollingRestart, the monitor's action)
	// runs the new file, not the one the master started from. Name a
	// symlink here when a deploy switches a symlink (os.Executable resolves
	// it). See docs/runtime.md, "Deploying a new binary".
	Executable string

	// Version is the application's version: the master logs it at start,
	// a check (Check) reports it, and /status, /metrics and the dashboard
	// show each process's. Default: the main module's version when the
	// binary was built at one (go install m@v1.2.3), else the short VCS
	// revision ("+dirty" when the tree was modified), else "dev".
	Version string

	// HostName names this host in the events it sends to other hosts
	// (emitter.AllHosts; Event.Host on every host): unique in the fleet, at
	// most emitter.MaxHost bytes. Default: the hostname, the master's pid
	// and the time its emitter region was made
	// (emitter.Emitter.SetHost).
	HostName string

	// NoSignals stops the master from handling SIGINT, SIGTERM (graceful
	// stop; a second signal stops at once), SIGHUP (rolling restart),
	// SIGUSR2 (in-place upgrade) and SIGTTIN/SIGTTOU (Cluster.Scale by one
	// worker up or down).
	NoSignals bool

	// OnEvent receives the master's lifecycle events (Event: switch on its
	// Kind, a master.Kind such as master.EventUp; Event.Name is the name the
	// emitter publishes it under), the ECV's marks (master.EventMarkUp,
	// master.EventMarkDown) included. Called in the master only, last of the
	// event's subscribers (after the emitter, the monitor and the service
	// manager's notification have seen it; see docs/runtime.md), from the
	// master's and the monitor's goroutines; must not block.
	OnEvent func(Event)

	// Logger receives log lines of every process. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in, except
// Handler.
func DefaultConfig() Config {
	c, _ := Config{}.withDefaults()
	return c
}

// Defaults of Config that are the cluster's own; the others are the
// constants of the package that applies the setting: master (Workers,
// MaxWorkers, NannyTolerance, MaxAge, ReplaceRetries, HungRequests, HungWindow), worker (HeartbeatInterval,
// ReplaceTimeout, StopTimeout, Server), monitor (MonitorAddr) and shm
// (ArenaSize).
const (
	DefaultAddr        = ":8080"
	DefaultMonitorAddr = monitor.DefaultAddr
	DefaultArenaSize   = shm.DefaultSize
	minArenaSize       = 1 << 20
)

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MonitorAddr == "" {
		c.MonitorAddr = DefaultMonitorAddr
	}
	if c.ArenaSize == 0 {
		c.ArenaSize = DefaultArenaSize
	}
	if c.Cache.Mode == "" {
		c.Cache.Mode = CacheMaster
	}
	if c.Cache.Durability == cache.DurabilityDefault {
		c.Cache.Durability = cache.DefaultDurability
	}
	// The master's settings take the master's defaults; ShouldKill stays
	// nil (its default depends on MaxAge, which the caller may still set).
	m := c.master().WithDefaults()
	c.Workers, c.HeartbeatInterval, c.NannyTolerance, c.MaxAge = m.Workers, m.HeartbeatInterval, m.NannyTolerance, m.MaxAge
	c.MaxWorkers = m.MaxWorkers
	c.StopTimeout, c.ReplaceTimeout, c.ReplaceRetries, c.Logger = m.StopTimeout, m.ReplaceTimeout, m.ReplaceRetries, m.Logger
	c.Executable, c.HungRequests, c.HungWindow = m.Exe, m.HungRequests, m.HungWindow
	if c.Version == "" {
		c.Version = build.DefaultVersion()
	}
	c.Server = c.Server.WithDefaults()
	return c, c.validate()
}

// master returns the master's share of c: the settings, without the
// listener, the arena and the hooks, which listenMaster adds.
func (c Config) master() master.Config {
	return master.Config{
		Workers: c.Workers, MaxWorkers: c.MaxWorkers, HeartbeatInterval: c.HeartbeatInterval, NannyTolerance: c.NannyTolerance, MaxAge: c.MaxAge,
		ShouldKill: c.ShouldKill, MemoryLimit: c.MemoryLimit, StopTimeout: c.StopTimeout,
		ReplaceTimeout: c.ReplaceTimeout, ReplaceRetries: c.ReplaceRetries, HandleSignals: !c.NoSignals,
		PidDir: c.PidDir, Logger: c.Logger, Exe: c.Executable,
		MaxRequests: c.MaxRequests, MaxRequestsJitter: c.MaxRequestsJitter, HungRequests: c.HungRequests, HungWindow: c.HungWindow,
	}
}

// worker returns the worker's share of c, without the hooks listenWorker
// adds (Attach).
func (c Config) worker() worker.Config {
	return worker.Config{
		Handler: c.Handler, Serve: c.Serve, Drain: c.Drain, NewServer: c.NewServer, Server: c.Server,
		ConfigureApp: c.ConfigureApp, WarmUp: c.WarmUp, ReplaceTimeout: c.ReplaceTimeout,
		HeartbeatInterval: c.HeartbeatInterval, StopTimeout: c.StopTimeout, Logger: c.Logger, Version: c.Version,
	}
}

// Validate reports the first field of c (with defaults applied) that is out
// of range, as an error wrapping ErrInvalidConfig that names the field.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// validate checks the cluster's own fields here, the worker's server with
// worker.Config.Validate and the master's with master.Config.Validate: each
// range is checked in one place.
func (c Config) validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("cluster2: %w: %s %v %s", ErrInvalidConfig, field, v, why)
	}
	if err := c.worker().Validate(); err != nil {
		return err // the server: Handler, or Serve with Drain
	}
	switch {
	case c.Cache.Mode != CacheStandalone && c.Cache.Mode != CacheMaster:
		return bad("Cache.Mode", fmt.Sprintf("%q", c.Cache.Mode), `is not "standalone" or "master"`)
	case c.Cache.Durability > cache.Always:
		return bad("Cache.Durability", c.Cache.Durability, "is not a cache.Durability")
	case c.Cache.Redis.Addr == "" && len(c.Cache.Redis.Caches) > 0:
		return bad("Cache.Redis.Caches", c.Cache.Redis.Caches, "needs Cache.Redis.Addr")
	case len(c.Cache.Redis.Caches) > 0 && !c.Cache.Enabled:
		return bad("Cache.Redis.Caches", c.Cache.Redis.Caches, "needs Cache.Enabled")
	case c.ArenaSize < minArenaSize:
		return bad("ArenaSize", c.ArenaSize, "is below 1 MiB")
	case c.Addr == c.MonitorAddr && !strings.HasSuffix(c.Addr, ":0"):
		return bad("MonitorAddr", c.MonitorAddr, "is the same as Addr")
	case len(c.HostName) > emitter.MaxHost:
		return bad("HostName", fmt.Sprintf("%.40q…", c.HostName), fmt.Sprintf("is longer than %d bytes", emitter.MaxHost))
	}
	if c.Cache.Redis.Addr != "" {
		if err := c.Cache.Redis.Validate(); err != nil {
			return fmt.Errorf("cluster2: Cache.Redis: %w", err)
		}
	}
	return c.master().Validate()
}

// String returns the configuration on one line, for the log at start.
func (c Config) String() string {
	return fmt.Sprintf("workers=%d maxWorkers=%d addr=%s monitor=%s heartbeat=%v maxAge=%v nanny=%v memLimit=%d maxRequests=%d+%d hung=%d/%v stop=%v replace=%v×%d arena=%d cache={enabled=%v mode=%s data=%q durability=%v downWhilePersistFailing=%v redis=%q distributed=%v} server=%v pidDir=%q exe=%q version=%q",
		c.Workers, c.MaxWorkers, c.Addr, c.MonitorAddr, c.HeartbeatInterval, c.MaxAge, c.NannyTolerance, c.MemoryLimit,
		c.MaxRequests, c.MaxRequestsJitter, c.HungRequests, c.HungWindow,
		c.StopTimeout, c.ReplaceTimeout, c.ReplaceRetries, c.ArenaSize, c.Cache.Enabled, c.Cache.Mode,
		c.Cache.DataDir, c.Cache.Durability, c.Cache.DownWhilePersistFailing, c.Cache.Redis.Addr, c.Cache.Redis.Caches, c.Server, c.PidDir, c.Executable, c.Version)
}
