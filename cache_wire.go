package cluster2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// cacheRuntime is the cache's part of one process of the cluster: the space,
// and in the master the log writer (mode master) or the supervisor
// of the cache-manager process (mode standalone).
type cacheRuntime struct {
	sp     *cache.Space
	mgr    *persist.LogWriter // mode master: runs in the master
	cancel context.CancelFunc
	done   chan error
	log    *slog.Logger
	proc   *managerProc // mode standalone
}

// startCacheMaster sets the cache space up in the master's arena before any
// worker starts; with a data directory it replays the log into it, then runs
// the log writer here (mode master) or hands it to a cache-manager
// process (mode standalone) and waits until that one took over.
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
		r.proc = &managerProc{a: a, sp: sp, log: c.Logger}
		if err := r.proc.start(ctx); err != nil {
			sp.Close()
			return nil, err
		}
		return r, nil
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

// stop ends the cache's work in this process: the log writer logs what is left
// and closes the log; a cache-manager process is told to stop and waited for.
func (r *cacheRuntime) stop() {
	if r == nil {
		return
	}
	if r.proc != nil {
		r.proc.stop()
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

// managerProc supervises the cache-manager process: it restarts it when it
// dies (with a back-off), after releasing its arena slot.
type managerProc struct {
	a   *shm.Arena
	sp  *cache.Space
	log *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd
	deathW   *os.File
	stopping bool
	exited   chan struct{}
	restarts int
}

// start starts the manager process and waits until it is the space's
// log writer, so that no worker writes before somebody logs.
func (mp *managerProc) start(ctx context.Context) error {
	if err := mp.spawn(); err != nil {
		return err
	}
	for !mp.sp.Journal().Attached() {
		select {
		case <-mp.exited:
			return fmt.Errorf("cluster2: cache: the cache manager exited during start")
		case <-ctx.Done():
			mp.stop()
			return fmt.Errorf("cluster2: cache: waiting for the cache manager: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (mp *managerProc) spawn() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cluster2: cache manager: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("cluster2: cache manager: %w", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = proc.ChildEnv(os.Environ(), proc.RoleCacheManager, proc.RoleCacheManager.Slot(mp.a.SlotCount()), os.Getpid())
	// At internal/proc's numbers; fd 3, the listener's, is closed.
	cmd.ExtraFiles = []*os.File{nil, mp.a.File(), r}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("cluster2: cache manager: %w", err)
	}
	r.Close()
	exited := make(chan struct{})
	mp.mu.Lock()
	mp.cmd, mp.deathW, mp.exited = cmd, w, exited
	mp.mu.Unlock()
	mp.log.Info("cluster2: cache manager started", "pid", cmd.Process.Pid)
	go mp.watch(cmd, w, exited)
	return nil
}

// watch waits for the manager to exit, releases its slot and restarts it.
func (mp *managerProc) watch(cmd *exec.Cmd, w *os.File, exited chan struct{}) {
	err := cmd.Wait()
	w.Close()
	for _, s := range mp.a.Slots() {
		if s.Pid == cmd.Process.Pid {
			mp.a.ReleaseSlot(s.Slot)
		}
	}
	close(exited)
	mp.mu.Lock()
	stopping := mp.stopping
	mp.restarts++
	n := mp.restarts
	mp.mu.Unlock()
	if stopping {
		return
	}
	back := min(time.Duration(float64(100*time.Millisecond)*pow15(n-1)), 5*time.Second)
	mp.log.Error("cluster2: cache manager died; restarting", "pid", cmd.Process.Pid, "err", err, "in", back)
	time.Sleep(back)
	mp.mu.Lock()
	stopping = mp.stopping
	mp.mu.Unlock()
	if stopping {
		return
	}
	if err := mp.spawn(); err != nil {
		mp.log.Error("cluster2: cache manager: restart failed", "err", err)
	}
}

func pow15(n int) float64 {
	f := 1.0
	for range min(n, 20) {
		f *= 1.5
	}
	return f
}

// stop tells the manager to finish (closing its death pipe is its signal),
// and waits up to 10 s before killing it.
func (mp *managerProc) stop() {
	mp.mu.Lock()
	mp.stopping = true
	cmd, w, exited := mp.cmd, mp.deathW, mp.exited
	mp.mu.Unlock()
	if cmd == nil {
		return
	}
	w.Close()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
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
	for back := 100 * time.Millisecond; ; back = min(2*back, 5*time.Second) {
		if err.Error() != last {
			c.Logger.Error("cluster2: cache manager: cannot open the data directory: Sets of persistent caches are refused until it can; retrying",
				"dir", c.Cache.DataDir, "err", err)
			last = err.Error()
		}
		if xtime.SleepCtx(ctx, back) != nil {
			return nil, err
		}
		if m, err = persist.Open(c.Cache.DataDir, persistOptions(c)); err == nil {
			return m, nil
		}
		p.SetFailing(err)
	}
}
