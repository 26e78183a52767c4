package cluster2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// cacheRuntime is the cache's part of one process of the cluster: the space,
// and in the master the log writer (mode master) or the cache manager's
// registration with the master (mode standalone: master.Config.Aux).
type cacheRuntime struct {
	sp         *cache.Space
	mgr        *persist.LogWriter // mode master: runs in the master
	cancel     context.CancelFunc
	done       chan error
	log        *slog.Logger
	standalone bool // mode standalone with a data directory: the master runs a cache manager
}

// managerBackoffMax caps the cache manager's crash back-off (the master's
// rule, its own cap): while it is down nobody logs, so Sets of persistent
// caches wait for it; its restart must not wait as long as a worker's may.
const managerBackoffMax = 5 * time.Second

// aux returns the auxiliary processes the cache needs the master to run: in
// mode standalone with a data directory, the cache manager, ready once it is
// the space's log writer (so that no worker writes before somebody logs).
func (r *cacheRuntime) aux() []master.Aux {
	if r == nil || !r.standalone {
		return nil
	}
	j := r.sp.Journal()
	return []master.Aux{{Role: proc.RoleCacheManager, Ready: j.Attached, CrashBackoffMax: managerBackoffMax}}
}

// startCacheMaster sets the cache space up in the master's arena before any
// worker starts; with a data directory it replays the log into it, then runs
// the log writer here (mode master) or leaves it to a cache-manager process
// (mode standalone), which the master spawns before the workers (see aux).
func startCacheMaster(ctx context.Context, c Config, a *shm.Arena) (*cacheRuntime, error) {
	sp, err := cache.Setup(ctx, a, cache.SpaceOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster2: cache: %w", err)
	}
	r := &cacheRuntime{sp: sp, log: c.Logger}
	if c.Cache.DataDir == "" {
		return r, nil
	}
	m, err := persist.Open(c.Cache.DataDir, persistOptions(c))
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("cluster2: cache: %w", err)
	}
	start := time.Now()
	if err := m.Replay(ctx, sp.Journal()); err != nil {
		m.Close()
		sp.Close()
		return nil, fmt.Errorf("cluster2: cache: replay: %w", err)
	}
	rec := m.Recovery()
	c.Logger.Info("cluster2: cache: replayed", "dir", c.Cache.DataDir, "snapshot", rec.SnapshotEntries,
		"log", rec.LogEntries, "tornBytes", rec.TornBytes, "salvaged", rec.Salvaged, "took", time.Since(start))
	if c.Cache.Mode == CacheStandalone {
		m.Release()
		if err := m.Close(); err != nil {
			sp.Close()
			return nil, fmt.Errorf("cluster2: cache: %w", err)
		}
		r.standalone = true
		return r, nil
	}
	r.mgr = m
	rctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- m.Run(rctx) }()
	return r, nil
}

// adoptCacheMaster takes the cache up in the next image of an upgrading
// master: the space is in the arena, warm, and is not set up nor replayed
// again; in mode master the log writer resumes where the previous image's
// left it (as a restarted cache manager does); in mode standalone the
// cache manager runs on, adopted by the master.
func adoptCacheMaster(ctx context.Context, c Config, a *shm.Arena) (*cacheRuntime, error) {
	sp, err := cache.Attach(a)
	if err != nil {
		return nil, fmt.Errorf("cluster2: cache: %w", err)
	}
	r := &cacheRuntime{sp: sp, log: c.Logger}
	if c.Cache.DataDir == "" {
		return r, nil
	}
	if c.Cache.Mode == CacheStandalone {
		r.standalone = true
		return r, nil
	}
	m, err := openManager(ctx, c, sp)
	if err == nil {
		err = m.Resume(sp.Journal())
		if err != nil {
			m.Close()
		}
	}
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("cluster2: cache: %w", err)
	}
	r.mgr = m
	rctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- m.Run(rctx) }()
	return r, nil
}

func persistOptions(c Config) persist.Options {
	return persist.Options{Durability: c.Cache.Durability, Salvage: c.Cache.Salvage, Logger: c.Logger}
}

// attachCacheWorker opens the master's cache space in a worker.
func attachCacheWorker(a *shm.Arena) (*cacheRuntime, error) {
	sp, err := cache.Attach(a)
	if err != nil {
		return nil, fmt.Errorf("cluster2: cache: %w", err)
	}
	return &cacheRuntime{sp: sp}, nil
}

// stop ends the cache's work in this process: the log writer logs what is
// left and closes the log (a cache-manager process has been stopped by the
// master already, after the last worker).
func (r *cacheRuntime) stop() {
	if r == nil {
		return
	}
	if r.mgr != nil {
		r.cancel()
		if err := <-r.done; err != nil {
			r.log.Error("cluster2: cache: log writer", "err", err)
		}
		r.mgr.Close()
	}
	r.sp.Close()
}

// isCacheManager reports whether this process is the cache-manager process.
func isCacheManager() bool {
	id, _ := proc.Self()
	return id.Role == proc.RoleCacheManager
}

// runCacheManager is Listen in the cache-manager process: it attaches the
// arena, resumes the log where the last manager left it and runs until the
// master is gone. It exits the process instead of returning: the user's main
// must not go on to serve in this process.
func runCacheManager(c Config) {
	log := c.Logger.With("role", "cache-manager", "pid", os.Getpid())
	code := 0
	if err := cacheManager(c); err != nil {
		log.Error("cluster2: cache manager", "err", err)
		code = 1
	}
	os.Exit(code)
}

func cacheManager(c Config) error {
	a, err := shm.Open(os.NewFile(proc.ArenaFD, "arena"))
	if err != nil {
		return err
	}
	defer a.Close()
	// The auxiliary slot of the process table is the cache manager's: the
	// master hands the others but its own to workers. A dead predecessor's
	// is reclaimed.
	if _, err := a.JoinSlot(proc.RoleCacheManager.Slot(a.SlotCount()), uint32(proc.RoleCacheManager)); err != nil {
		return err
	}
	sp, err := cache.Attach(a)
	if err != nil {
		return err
	}
	defer sp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the master holds the write end: EOF means it is gone or wants us to stop
		var b [1]byte
		os.NewFile(proc.DeathFD, "death-pipe").Read(b[:])
		cancel()
	}()
	m, err := openManager(ctx, c, sp)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Resume(sp.Journal()); err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// openManager opens the data directory for a cache manager that takes over
// a running cluster. While it cannot (a full disk: the log's last segment
// cannot be preallocated again; damage), it holds the log writer role and
// marks the space failing, so that Sets of persistent caches are refused
// rather than acknowledged with nobody logging them, and retries with a
// back-off of up to 5 s until ctx ends. The LogWriter's Run clears the failure
// once it has logged what the journal holds.
func openManager(ctx context.Context, c Config, sp *cache.Space) (*persist.LogWriter, error) {
	m, err := persist.Open(c.Cache.DataDir, persistOptions(c))
	if err == nil {
		return m, nil
	}
	p, aerr := sp.Journal().Attach(c.Cache.Durability)
	if aerr != nil {
		return nil, fmt.Errorf("%w (and cannot hold the log writer role: %w)", err, aerr)
	}
	defer p.Detach()
	p.SetFailing(err)
	last := ""
	for back := (backoff.Backoff{First: 100 * time.Millisecond, Factor: 2, Max: 5 * time.Second}); ; {
		if err.Error() != last {
			c.Logger.Error("cluster2: cache manager: cannot open the data directory: Sets of persistent caches are refused until it can; retrying",
				"dir", c.Cache.DataDir, "err", err)
			last = err.Error()
		}
		if xtime.SleepCtx(ctx, back.Next()) != nil {
			return nil, err
		}
		if m, err = persist.Open(c.Cache.DataDir, persistOptions(c)); err == nil {
			return m, nil
		}
		p.SetFailing(err)
	}
}
