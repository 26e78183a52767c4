package master

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/worker"
)

// Defaults of Config.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultNannyTolerance    = 3 * time.Minute
	DefaultMaxAge            = 72 * time.Hour
	DefaultStopTimeout       = 60 * time.Second
	DefaultReplaceTimeout    = 60 * time.Second
	DefaultReplaceRetries    = 3
	DefaultCrashBackoffMax   = 30 * time.Second
)

// Config configures a Master. Zero fields take their defaults; Listener and
// Arena are required.
type Config struct {
	// Workers is the number of workers. Default runtime.NumCPU(); negative is
	// an error.
	Workers int

	// Listener is the shared listening socket, handed to every worker as fd
	// 3. It must be made with os.NewFile (not net.TCPListener.File, whose Fd
	// switches the shared description to blocking mode). Required.
	Listener *os.File

	// Arena is the cluster's arena, handed to every worker as fd 4. Its
	// supervision region must not exist yet or be this master's. Required.
	Arena *shm.Arena

	// Exe, Args and Env define the worker command. Default /proc/self/exe,
	// os.Args and os.Environ() (the worker protocol's variables are added).
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
	// is killed. Default 5 s.
	HeartbeatInterval time.Duration

	// NannyTolerance is how long an active worker may go without a heartbeat
	// before it is replaced. Default 3 min; negative disables the nanny.
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

	// StopTimeout bounds a graceful stop: past it, remaining workers are
	// killed. Default 60 s.
	StopTimeout time.Duration

	// ReplaceTimeout bounds each guarded step of a replacement: a successor
	// becoming ready (listening and warmed), and an old worker draining
	// before SIGTERM (and as long again before SIGKILL). It bounds the
	// initial workers' readiness in Start too. Default 60 s.
	ReplaceTimeout time.Duration

	// ReplaceRetries is how many more successors are tried after one fails.
	// Default 3; negative: none.
	ReplaceRetries int

	// CrashBackoffMax caps the delay before replacing a worker that keeps
	// crashing (the delay grows ×1.5 per crash in a row), and the delay
	// between retries of a respawn whose spawn failed (from 250 ms, ×2).
	// Default 30 s.
	CrashBackoffMax time.Duration

	// HandleSignals makes the master handle SIGINT/SIGTERM (graceful stop; a
	// second signal stops at once) and SIGHUP (rolling restart).
	HandleSignals bool

	// PidDir, when set, receives master.<pid>.pid and worker.<pid>.pid files
	// (the seed's pids directory); a worker's file is removed when it exits,
	// the master's when it stops. Start creates it 0700 and refuses (an
	// error wrapping ErrPidDir) one that is a symlink, another user's, or
	// writable by group or others; pid files are never written through a
	// symlink; Start removes the files of dead pids (a master killed with
	// SIGKILL leaves them), never a live pid's. See the package doc.
	PidDir string

	// OnEvent, when set, receives lifecycle events (see Event). It is called
	// from the master's goroutines and must not block.
	OnEvent func(Event)

	// OnHeartbeat, when set, receives every heartbeat as the master takes it
	// in, with the worker's pid. It is called from the master's goroutines
	// and must not block.
	OnHeartbeat func(pid int, hb worker.Heartbeat)

	// Logger receives the master's log lines. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Workers < 0:
		return c, fmt.Errorf("master: %w: Workers %d is negative", ErrInvalidConfig, c.Workers)
	case c.Listener == nil:
		return c, fmt.Errorf("master: %w: Listener is nil", ErrInvalidConfig)
	case c.Arena == nil:
		return c, fmt.Errorf("master: %w: Arena is nil", ErrInvalidConfig)
	case c.StopTimeout < 0:
		return c, fmt.Errorf("master: %w: StopTimeout %v is negative", ErrInvalidConfig, c.StopTimeout)
	case c.ReplaceTimeout < 0:
		return c, fmt.Errorf("master: %w: ReplaceTimeout %v is negative", ErrInvalidConfig, c.ReplaceTimeout)
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Workers+2 > c.Arena.SlotCount() { // the master's slot and the reserved last one
		return c, fmt.Errorf("master: %w: Workers %d needs more than the arena's %d slots", ErrInvalidConfig, c.Workers, c.Arena.SlotCount())
	}
	if c.Exe == "" {
		c.Exe = "/proc/self/exe"
	}
	if c.Args == nil {
		c.Args = os.Args
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
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
		c.StopTimeout = DefaultStopTimeout
	}
	if c.ReplaceTimeout == 0 {
		c.ReplaceTimeout = DefaultReplaceTimeout
	}
	if c.ReplaceRetries == 0 {
		c.ReplaceRetries = DefaultReplaceRetries
	} else if c.ReplaceRetries < 0 {
		c.ReplaceRetries = 0
	}
	if c.CrashBackoffMax <= 0 {
		c.CrashBackoffMax = DefaultCrashBackoffMax
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
