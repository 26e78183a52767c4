package master

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/worker"
)

// Defaults of Config, for the settings the master owns. The bounds the
// workers apply too (HeartbeatInterval, ReplaceTimeout, StopTimeout) default
// to worker.DefaultHeartbeatInterval, worker.DefaultReplaceTimeout and
// worker.DefaultStopTimeout: one constant each, on the side that imports
// none of the other.
const (
	DefaultNannyTolerance  = 3 * time.Minute
	DefaultMaxAge          = 72 * time.Hour
	DefaultReplaceRetries  = 3
	DefaultCrashBackoffMax = 30 * time.Second

	// DefaultHungRequests and DefaultHungWindow are HungRequests' and
	// HungWindow's defaults: a worker with 3 requests past the server's
	// RequestTimeout within a minute is replaced.
	DefaultHungRequests = 3
	DefaultHungWindow   = time.Minute

	// DefaultAuxStopTimeout is Aux.StopTimeout's default.
	DefaultAuxStopTimeout = 10 * time.Second

	// MaxWorkers is the largest Config.Workers.
	MaxWorkers = 1000
)

// DefaultExe returns the default of Config.Exe: the running executable's
// path (os.Executable: on Linux the target of /proc/self/exe, without the
// " (deleted)" a rename over it adds), or "/proc/self/exe" if it cannot be
// resolved. Resolve it once, at start: the path names the file a deploy
// replaces, /proc/self/exe the file this process was started from.
func DefaultExe() string {
	if p, err := os.Executable(); err == nil && p != "" {
		return p
	}
	return "/proc/self/exe"
}

// DefaultWorkers returns the default of Config.Workers: runtime.NumCPU().
func DefaultWorkers() int { return runtime.NumCPU() }

// DefaultMaxWorkers returns the default of Config.MaxWorkers for a cluster
// of workers workers: twice the larger of workers and runtime.NumCPU(), at
// most MaxWorkers.
func DefaultMaxWorkers(workers int) int { return min(MaxWorkers, 2*max(workers, runtime.NumCPU())) }

// Config configures a Master. Zero fields take their defaults; Listener and
// Arena are required.
type Config struct {
	// Workers is the number of workers. Default DefaultWorkers()
	// (runtime.NumCPU()); at most MaxWorkers; negative is an error.
	Workers int

	// MaxWorkers is the ceiling of Scale (the elastic worker count):
	// Scale above it returns ErrAboveCeiling. The arena's process table is
	// fixed when the arena is made, so the ceiling is too: Start takes it
	// as at most half the arena's worker slots (the other half is room for
	// successors and draining workers; cluster2 sizes the table from it).
	// Default DefaultMaxWorkers(Workers): twice the larger of Workers and
	// the number of CPUs; at most MaxWorkers (1000); below Workers is an
	// error.
	MaxWorkers int

	// Listener is the shared listening socket, handed to every worker as fd
	// 3. It must be made with os.NewFile (not net.TCPListener.File, whose Fd
	// switches the shared description to blocking mode). Required.
	Listener *os.File

	// Arena is the cluster's arena, handed to every worker as fd 4. Its
	// supervision region must not exist yet or be this master's. Required.
	Arena *shm.Arena

	// Exe, Args and Env define the command of every child (workers and
	// auxiliary processes). Exe defaults to the master's executable path as
	// os.Executable reports it when the defaults are applied (Start,
	// WithDefaults), or /proc/self/exe if it cannot: every spawn execs that
	// path, so after a new binary is renamed over it a rolling restart runs
	// the new file (see the package doc's "Deploying a new binary"). Args and
	// Env default to os.Args and os.Environ() (the worker protocol's
	// variables are added).
	// Unless Env sets GOMAXPROCS, workers get GOMAXPROCS = NumCPU/Workers
	// (at least 1): the workers share the cores rather than each scheduling
	// goroutines on all of them.
	Exe  string
	Args []string
	Env  []string

	// HeartbeatInterval is the workers' heartbeat period (workers take
	// theirs from their own configuration: give the same value). The master
	// logs it at start and judges by it whether a dismissed worker is
	// unresponsive: one that neither acknowledges the drain nor heartbeats
	// within 2 × HeartbeatInterval (at least 1 s, at most ReplaceTimeout)
	// is killed. Default 5 s (worker.DefaultHeartbeatInterval); negative is
	// an error.
	HeartbeatInterval time.Duration

	// NannyTolerance is how long an active worker may go without a heartbeat
	// before it is replaced. Default 3 min; negative disables the nanny.
	// Must exceed HeartbeatInterval.
	NannyTolerance time.Duration

	// MaxAge is the uptime past which the default ShouldKill replaces a
	// worker. Default 72 h; negative: never.
	MaxAge time.Duration

	// ShouldKill judges each heartbeat of an active worker; true queues the
	// worker for replacement. Default DefaultShouldKill(MaxAge).
	ShouldKill func(worker.Heartbeat) bool

	// MemoryLimit replaces a worker whose resident memory exceeds it, in
	// bytes. Default 0: no limit.
	MemoryLimit uint64

	// MaxRequests recycles a worker once it has served that many requests
	// on the shared socket (its warm-up's are not counted), plus its own
	// jitter: each worker's limit is MaxRequests + a number drawn uniformly
	// in [0, MaxRequestsJitter] when it is spawned (gunicorn's max_requests
	// and max_requests_jitter), so that workers started together are not
	// replaced together. The replacement goes through the death queue
	// (successor first; the old worker drains), emitted as EventRecycled
	// with ReasonMaxRequests. WorkerInfo.RequestLimit says each worker's
	// limit. Default 0: no limit; negative is an error.
	MaxRequests int

	// MaxRequestsJitter is the most a worker's request limit exceeds
	// MaxRequests by (see MaxRequests). Default 0; negative, or set without
	// MaxRequests, is an error.
	MaxRequestsJitter int

	// HungRequests replaces a worker once that many of its requests passed
	// the server's RequestTimeout (worker.ServerConfig.RequestTimeout: the
	// handler did not return within it, whether it then returned or stays
	// stuck) within HungWindow (uWSGI's harakiri, gunicorn's worker
	// timeout): through the death queue, emitted as EventRecycled with
	// ReasonHungRequests; an old worker whose stuck handlers keep it from
	// draining is stopped at its drain deadline, SIGTERMed past
	// ReplaceTimeout and SIGKILLed past as long again. Nothing is counted
	// without a RequestTimeout. Default 3; negative: never replaced for it
	// (still counted, WorkerInfo.HungRequests); at most 10000.
	HungRequests int

	// HungWindow is the window of HungRequests. Default 1 min; negative is
	// an error.
	HungWindow time.Duration

	// StopTimeout bounds a graceful stop: past it, remaining workers are
	// killed. Workers take the same bound for a drain they start themselves
	// (worker.Config.StopTimeout). Default 60 s (worker.DefaultStopTimeout).
	StopTimeout time.Duration

	// ReplaceTimeout bounds each guarded step of a replacement: a successor
	// becoming ready (listening and warmed), and an old worker draining
	// before SIGTERM (and as long again before SIGKILL). It bounds the
	// initial workers' readiness in Start too, and every worker's WarmUp
	// (worker.Config.ReplaceTimeout). Default 60 s
	// (worker.DefaultReplaceTimeout).
	ReplaceTimeout time.Duration

	// ReplaceRetries is how many more successors are tried after one fails.
	// Default 3; negative: none.
	ReplaceRetries int

	// CrashBackoffMax caps the delay before replacing a worker that keeps
	// crashing (the delay grows ×1.5 per crash in a row), and the delay
	// between retries of a respawn whose spawn failed (from 250 ms, ×2).
	// Default 30 s.
	CrashBackoffMax time.Duration

	// Aux are the cluster's auxiliary processes (cluster2 registers its
	// cache manager here, in Cache.Mode standalone): spawned before the
	// workers, restarted when they die, stopped after the last worker; see
	// Aux. Default none.
	Aux []Aux

	// HandleSignals makes the master handle SIGINT/SIGTERM (graceful stop; a
	// second signal stops at once), SIGHUP (rolling restart), SIGUSR2
	// (Upgrade, when set) and SIGTTIN/SIGTTOU (Scale by one worker up or
	// down).
	HandleSignals bool

	// Upgrade, when set, runs on SIGUSR2 (with HandleSignals), in a
	// goroutine of its own: cluster2 sets it to its in-place upgrade (see
	// the package doc's "Upgrading in place"). Its error is logged. Nil:
	// SIGUSR2 is logged and ignored.
	Upgrade func(context.Context) error

	// PidDir, when set, receives master.<pid>.pid and worker.<pid>.pid files
	// (the Node original's pids directory); a worker's file is removed when
	// it exits, the master's when it stops. Start creates it 0700 and refuses
	// (an error wrapping ErrPidDir) one that is a symlink, another user's, or
	// writable by group or others; pid files are never written through a
	// symlink; Start removes the files of dead pids (a master killed with
	// SIGKILL leaves them), never a live pid's. See the package doc.
	PidDir string

	// Check, when set, checks the binary at Exe before a rolling restart
	// (RollingRestart, SIGHUP) starts its first successor, bounded by
	// ReplaceTimeout: an error refuses the whole restart (EventCheckFailed,
	// logged, RollingRestart returns it) and replaces nothing, so every old
	// worker keeps serving. cluster2 sets it to cluster2.Check. Default nil:
	// no check (the master's own tests run raw test binaries).
	Check func(ctx context.Context, exe string) error

	// OnEvent, when set, receives every lifecycle event the master makes
	// (see Event and Kind). It is called from the master's goroutines and
	// must not block.
	OnEvent func(Event)

	// OnHeartbeat, when set, receives every heartbeat as the master takes it
	// in, with the worker's pid. It is called from the master's goroutines
	// and must not block.
	OnHeartbeat func(pid int, hb worker.Heartbeat)

	// Logger receives the master's log lines. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field set to its default, as Start
// does (Listener and Arena have none). It is idempotent, and keeps a
// negative value that means "off" (NannyTolerance, MaxAge, ReplaceRetries,
// HungRequests) as it is.
func (c Config) WithDefaults() Config {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers()
	}
	if c.MaxWorkers == 0 && c.Workers > 0 {
		c.MaxWorkers = DefaultMaxWorkers(c.Workers)
	}
	if c.Exe == "" {
		c.Exe = DefaultExe()
	}
	if c.Args == nil {
		c.Args = os.Args
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = worker.DefaultHeartbeatInterval
	}
	if c.NannyTolerance == 0 {
		c.NannyTolerance = DefaultNannyTolerance
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.ShouldKill == nil {
		c.ShouldKill = DefaultShouldKill(c.MaxAge)
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = worker.DefaultStopTimeout
	}
	if c.ReplaceTimeout == 0 {
		c.ReplaceTimeout = worker.DefaultReplaceTimeout
	}
	if c.ReplaceRetries == 0 {
		c.ReplaceRetries = DefaultReplaceRetries
	}
	if c.HungRequests == 0 {
		c.HungRequests = DefaultHungRequests
	}
	if c.HungWindow == 0 {
		c.HungWindow = DefaultHungWindow
	}
	if c.CrashBackoffMax <= 0 {
		c.CrashBackoffMax = DefaultCrashBackoffMax
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first setting of c (with defaults applied) that is
// out of range, as an error wrapping ErrInvalidConfig that names the field.
// It checks the settings only: Start also requires a Listener and an Arena
// with room for Workers. cluster2.Config.Validate calls it: each range is
// checked here only.
func (c Config) Validate() error { return c.WithDefaults().validate() }

func (c Config) validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("master: %w: %s %v %s", ErrInvalidConfig, field, v, why)
	}
	switch {
	case c.Workers < 0:
		return bad("Workers", c.Workers, "is negative")
	case c.Workers > MaxWorkers:
		return bad("Workers", c.Workers, fmt.Sprintf("is above %d", MaxWorkers))
	case c.MaxWorkers < c.Workers:
		return bad("MaxWorkers", c.MaxWorkers, fmt.Sprintf("is below Workers (%d)", c.Workers))
	case c.MaxWorkers > MaxWorkers:
		return bad("MaxWorkers", c.MaxWorkers, fmt.Sprintf("is above %d", MaxWorkers))
	case c.HeartbeatInterval < 0:
		return bad("HeartbeatInterval", c.HeartbeatInterval, "is negative")
	case c.NannyTolerance > 0 && c.NannyTolerance <= c.HeartbeatInterval:
		return bad("NannyTolerance", c.NannyTolerance, "is not above HeartbeatInterval")
	case c.StopTimeout < 0:
		return bad("StopTimeout", c.StopTimeout, "is negative")
	case c.ReplaceTimeout < 0:
		return bad("ReplaceTimeout", c.ReplaceTimeout, "is negative")
	case c.MaxRequests < 0:
		return bad("MaxRequests", c.MaxRequests, "is negative")
	case c.MaxRequestsJitter < 0:
		return bad("MaxRequestsJitter", c.MaxRequestsJitter, "is negative")
	case c.MaxRequestsJitter > 0 && c.MaxRequests == 0:
		return bad("MaxRequestsJitter", c.MaxRequestsJitter, "is set without MaxRequests")
	case c.HungRequests > maxHungTimes:
		return bad("HungRequests", c.HungRequests, fmt.Sprintf("is above %d", maxHungTimes))
	case c.HungWindow < 0:
		return bad("HungWindow", c.HungWindow, "is negative")
	}
	return nil
}

// requestLimit draws the request limit of a worker being spawned:
// MaxRequests plus a number in [0, MaxRequestsJitter]; 0 without
// MaxRequests.
func (c Config) requestLimit() uint64 {
	if c.MaxRequests <= 0 {
		return 0
	}
	return uint64(c.MaxRequests) + uint64(rand.IntN(c.MaxRequestsJitter+1))
}

// withDefaults is Start's: the required fields, the defaults, the ranges,
// and the arena's room for the workers.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Listener == nil:
		return c, fmt.Errorf("master: %w: Listener is nil", ErrInvalidConfig)
	case c.Arena == nil:
		return c, fmt.Errorf("master: %w: Arena is nil", ErrInvalidConfig)
	}
	c = c.WithDefaults()
	if err := c.validate(); err != nil {
		return c, err
	}
	if c.Workers > proc.WorkerSlots(c.Arena.SlotCount()) { // not the master's slot, nor the auxiliary one
		return c, fmt.Errorf("master: %w: Workers %d needs more than the arena's %d slots", ErrInvalidConfig, c.Workers, c.Arena.SlotCount())
	}
	aux := make([]Aux, len(c.Aux))
	for i, a := range c.Aux {
		slot := a.Role.Slot(c.Arena.SlotCount())
		if slot <= 0 || slices.ContainsFunc(aux[:i], func(b Aux) bool { return b.Role == a.Role }) {
			return c, fmt.Errorf("master: %w: Aux[%d]: %v is not an auxiliary role, or twice", ErrInvalidConfig, i, a.Role)
		}
		if a.CrashBackoffMax <= 0 {
			a.CrashBackoffMax = c.CrashBackoffMax
		}
		if a.StopTimeout <= 0 {
			a.StopTimeout = DefaultAuxStopTimeout
		}
		aux[i] = a
	}
	c.Aux = aux
	c.ReplaceRetries = max(c.ReplaceRetries, 0) // negative: none
	return c, nil
}
