package cluster2

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/status"
	"github.com/cluster2/cluster2/worker"
	"golang.org/x/sys/unix"
)

// Event is a lifecycle event of the master; see master.Event.
type Event = master.Event

// WorkerInfo describes one worker; see master.WorkerInfo.
type WorkerInfo = master.WorkerInfo

// Role tells what a process of the cluster is: the master, a worker or the
// cache manager (Cache.Mode standalone), or a new binary being checked
// before it replaces anything (Checking).
type Role int

// The roles of a process.
const (
	Master Role = iota
	Worker
	CacheManager

	// Checking is a new binary being checked (Check) before it replaces
	// anything: Listen writes the build's information and exits 0. Code
	// before Listen must do nothing a master does (bind, write files).
	Checking
)

// String returns "master", "worker", "cache-manager" or "check".
func (r Role) String() string {
	switch r {
	case Worker:
		return "worker"
	case CacheManager:
		return "cache-manager"
	case Checking:
		return "check"
	}
	return "master"
}

// StatusRespawns is the master's built-in status (package status, the
// monitor's /status) listing the slots whose lost worker the master failed
// to respawn so far and keeps retrying: []Respawn, empty when every worker
// is there.
const StatusRespawns = status.NameRespawns

// Respawn describes a slot whose worker could not be respawned yet; see
// master.Respawn.
type Respawn = master.Respawn

// CurrentRole returns the role of this process, at any time: before Listen,
// after it, or without it (the environment that tells a child of the master
// is read when the program starts, before Listen removes it). Listen never
// returns in the cache manager nor in a binary being checked (Checking):
// everything before it runs there too.
func CurrentRole() Role {
	id, _ := proc.Self() // a malformed variable makes a worker: Listen's error says why
	switch id.Role {
	case proc.RoleMaster:
		return Master
	case proc.RoleCacheManager:
		return CacheManager
	case proc.RoleCheck:
		return Checking
	}
	return Worker
}

// Cluster is a running cluster, seen from the process that called Listen:
// the master or one worker. Its methods are safe for concurrent use. It must
// not be copied.
type Cluster struct {
	_      nocopy.NoCopy
	role   Role
	cfg    Config
	m      *master.Master
	w      *worker.Worker
	arena  *shm.Arena
	self   *shm.Proc
	addr   net.Addr
	lnFile *os.File
	in     *instances // its emitter, status registry and cache space

	cache     *cacheRuntime   // nil unless Config.Cache.Enabled
	mon       *monitorRuntime // master: nil when the monitor is off or did not start
	ew        *emitterRuntime // master: the emitter's part
	upgrade   upgrader        // master: the in-place upgrade's state
	closeOnce sync.Once
}

// Listen starts the cluster in the calling process, whichever role it has:
// the user's main calls it in every process. In the master it creates the
// arena and the one listening socket (a busy port is an error, never an
// exit), re-executes this binary as Workers workers, and returns once every
// one of them is listening and warmed up. In a worker it warms up on a
// private loopback address, joins the shared socket and returns once it
// accepts there. ctx bounds the start only.
func Listen(ctx context.Context, cfg Config) (*Cluster, error) {
	if runtime.GOOS != "linux" {
		return nil, ErrNotSupported
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if id, _ := proc.Self(); id.Role == proc.RoleCheck {
		runCheck(c) // never returns: writes the build's information, exits 0
	}
	if isCacheManager() {
		runCacheManager(c) // never returns
	}
	if worker.IsWorker() {
		return listenWorker(ctx, c)
	}
	return listenMaster(ctx, c)
}

func listenWorker(ctx context.Context, c Config) (*Cluster, error) {
	in := newInstances()
	var cr *cacheRuntime
	wc := c.worker()
	// The cache is attached before warm-up and serving: no request may find
	// it missing. The profiles' socket is up before then too: the monitor may
	// ask for it as soon as the worker listens.
	wc.Attach = func(ctx context.Context, a *shm.Arena, p *shm.Proc) (err error) {
		serveWorkerProfiles(c)
		if err := attachEmitterWorker(ctx, a, p, in.em); err != nil {
			return err
		}
		if err := in.registerWorkerStatuses(ctx, a, p); err != nil {
			return err
		}
		if c.Cache.Enabled {
			if cr, err = attachCacheWorker(a); err != nil {
				return err
			}
			in.useSpace(cr.sp)
		}
		in.br, err = startBridge(c, in.sp, false) // the distributed caches' client: before any request
		return err
	}
	w, err := worker.Run(ctx, wc)
	if err != nil {
		in.release()
		cr.stop()
		return nil, err
	}
	return &Cluster{role: Worker, cfg: c, w: w, arena: w.Arena(), self: w.Proc(), addr: w.Addr(), in: in, cache: cr}, nil
}

func listenMaster(ctx context.Context, c Config) (cl *Cluster, err error) {
	if h, ok, err := proc.TakeHandover(); ok {
		return listenAdopted(ctx, c, h, err) // the next image of an upgrading master: never a fresh start
	}
	c.Logger.Info("cluster2: starting master", "config", c.String())
	ln, stored, err := activatedListener(c.Addr, c.Logger) // systemd's socket activation (LISTEN_FDS), unset for the children
	if err != nil {
		return nil, err
	}
	if ln != nil {
		c.Logger.Info("cluster2: serving the activated socket", "addr", ln.Addr().String())
	} else {
		l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.Addr)
		if err != nil {
			return nil, fmt.Errorf("cluster2: listen %s: %w", c.Addr, err)
		}
		ln = l.(*net.TCPListener)
	}
	addr := ln.Addr()
	f, err := sharedFile(ln)
	ln.Close() // the dup keeps the socket open
	if err != nil {
		return nil, fmt.Errorf("cluster2: listen %s: %w", c.Addr, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	a := restoreArena(stored, c) // the arena systemd kept for us (FDSTORE), when it can be taken up
	restored := a != nil
	if a == nil {
		if a, err = shm.Create(shm.Options{Size: c.ArenaSize, Slots: slotsFor(c.MaxWorkers)}); err != nil {
			return nil, fmt.Errorf("cluster2: arena: %w", err)
		}
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	var self *shm.Proc
	if restored {
		self, err = a.JoinSlot(0, 0) // the master's slot, released by restoreArena
	} else {
		self, err = a.Self() // Create joined slot 0
	}
	if err != nil {
		return nil, fmt.Errorf("cluster2: arena: %w", err)
	}
	return runMaster(ctx, c, masterParts{f: f, addr: addr, a: a, self: self, restored: restored,
		fromStore: stored != nil && ln != nil})
}

// masterParts are what a master runs on: the shared listener, the arena and
// this process's membership of it, made by Listen or handed over by the
// previous image of this process (ho set).
type masterParts struct {
	f    *os.File
	addr net.Addr
	a    *shm.Arena
	self *shm.Proc
	ho   *handover // nil: a fresh start

	// restored: the arena is the one systemd's file-descriptor store kept
	// (its cache warm, every process of it dead); fromStore: the listener
	// and the arena came from the store (not sent to it again).
	restored, fromStore bool
}

// runMaster starts (or, with a handover, adopts) everything of the master
// on its parts: the cache, the emitter, the monitor, then the master and
// its children. On an error the caller closes the parts.
func runMaster(ctx context.Context, c Config, p masterParts) (cl *Cluster, err error) {
	a, self, ho := p.a, p.self, p.ho
	in := newInstances()
	var cr *cacheRuntime
	if c.Cache.Enabled { // before any worker: persistent caches are replayed first
		if ho != nil || p.restored {
			cr, err = adoptCacheMaster(ctx, c, a)
		} else {
			cr, err = startCacheMaster(ctx, c, a)
		}
		if err != nil {
			return nil, err
		}
		in.useSpace(cr.sp) // before the monitor: it is handed the Cluster's space
		defer func() {
			if err != nil {
				in.release()
				cr.stop()
			}
		}()
	}
	if in.br, err = startBridge(c, in.sp, true); err != nil { // the host's tracking connection: before any worker loads
		return nil, err
	}
	defer func() {
		if err != nil && in.br != nil {
			in.br.Close()
		}
	}()
	ew, err := startEmitterMaster(ctx, c, a, self, in) // before any worker: each is armed when forked
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ew.close()
		}
	}()
	notify := newNotifier(c.Logger, c.Workers, ho != nil)
	if notify != nil && ho == nil && !p.fromStore {
		notify.store = fdStoreOf(p.f, a) // systemd's file-descriptor store keeps them across a restart
	}
	events := &lifecycle{emitter: ew, notify: notify, user: c.OnEvent}    // the one path of every lifecycle event
	mon, err := startMonitor(c, p.addr, a, in, events, ho.monitorParts()) // before any worker: the ECV answers down until they are warm
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			mon.close()
		}
	}()
	cl = &Cluster{role: Master, cfg: c, arena: a, self: self, addr: p.addr, lnFile: p.f, in: in, cache: cr, mon: mon, ew: ew}
	if ho != nil {
		cl.upgrade.adopting(ho)
	}
	mc := c.master()
	mc.Listener, mc.Arena, mc.Env = p.f, a, mon.workerEnv()
	mc.OnEvent, mc.OnHeartbeat = events.deliver, ew.onHeartbeat
	mc.Aux = cr.aux()                                        // the cache manager (mode standalone): spawned before the workers, stopped after them
	mc.Check = func(ctx context.Context, exe string) error { // before a rolling restart's first successor
		_, err := Check(ctx, exe, mc.Args, mc.Env)
		return err
	}
	mc.Upgrade = cl.Upgrade
	if ho == nil && !p.restored {
		mc.MaxWorkers = ringCeiling(c, a, ew)
	}
	var m *master.Master
	if ho != nil {
		mc.Exe = ho.spawnExe()
		if ho.Workers > 0 {
			mc.Workers = min(ho.Workers, max(mc.MaxWorkers, mc.Workers)) // the previous image's target: Scale's count survives the upgrade
		}
		m, err = master.Adopt(ctx, mc, ho.Children, ho.deathR, ho.deathW) // up when it returns
	} else {
		m, err = master.Start(ctx, mc) // returns once the workers are spawned
	}
	if err != nil {
		return nil, err
	}
	cl.m = m
	mon.attach(m) // the dashboard shows the workers while they start
	if mon != nil {
		mon.src.cluster.Store(cl)
	}
	ew.attach(m)
	in.registerMasterStatuses(m, &cl.upgrade)
	if err := m.WaitUp(ctx); err != nil {
		return nil, err // the master stopped every process it started
	}
	if ho != nil {
		if err := mon.serveAdopted(); err != nil {
			return nil, fmt.Errorf("cluster2: monitor: %w", err)
		}
	}
	return cl, nil
}

// ringCeiling bounds Config.MaxWorkers by the arena's room for event rings,
// on a fresh start (no ring allocated yet, the cache's region made): each
// worker slot takes ew's SlotBytes the first time it is used, and the
// ceiling keeps room for one successor's. A ceiling lowered is logged (raise
// ArenaSize); it stays at least Workers (a start without room for those
// fails as before).
func ringCeiling(c Config, a *shm.Arena, ew *emitterRuntime) int {
	per := ew.em.SlotBytes()
	fit := int(a.Free()/per) - 1
	if fit >= c.MaxWorkers {
		return c.MaxWorkers
	}
	n := max(fit, c.Workers)
	c.Logger.Warn("cluster2: MaxWorkers lowered: the arena has room for the event rings of fewer workers (raise ArenaSize)",
		"maxWorkers", c.MaxWorkers, "lowered", n, "arenaFree", a.Free(), "perWorker", per)
	return n
}

// slotsFor sizes the process table for a ceiling of maxWorkers workers
// (Config.MaxWorkers): the master, the workers, as many successors and
// draining workers again, and room for tools and a cache manager. The
// master takes half the worker slots as Scale's ceiling: maxWorkers+3 here,
// at least 31.
func slotsFor(maxWorkers int) int { return max(shm.DefaultSlots, 2*maxWorkers+8) }

// sharedFile returns a descriptor of ln's socket that is safe to hand to
// children: a close-on-exec dup wrapped by os.NewFile, whose Fd leaves the
// shared description non-blocking (TCPListener.File's would switch it to
// blocking for every process).
func sharedFile(ln *net.TCPListener) (*os.File, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	var dup int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	if err := proc.SetNonblock(dup); err != nil {
		unix.Close(dup)
		return nil, err
	}
	return os.NewFile(uintptr(dup), "listener:"+ln.Addr().String()), nil
}

// Role returns the role of this process.
func (c *Cluster) Role() Role { return c.role }

// IsMaster reports whether this process is the master.
func (c *Cluster) IsMaster() bool { return c.role == Master }

// Pid returns this process's pid.
func (c *Cluster) Pid() int { return os.Getpid() }

// Slot returns this process's slot in the arena's process table (0 for the
// master).
func (c *Cluster) Slot() int {
	if c.w != nil {
		return c.w.Slot()
	}
	return 0
}

// Addr returns the shared listening address (with the port chosen when Addr
// asked for port 0). In a paused worker it is nil.
func (c *Cluster) Addr() net.Addr {
	if c.w != nil {
		if a := c.w.Addr(); a != nil {
			return a
		}
	}
	return c.addr
}

// Arena returns the shared arena, mapped in this process: the place for the
// cache and the rings.
func (c *Cluster) Arena() *shm.Arena { return c.arena }

// Proc returns this process's membership of the arena.
func (c *Cluster) Proc() *shm.Proc { return c.self }

// Config returns the configuration in force (defaults filled in).
func (c *Cluster) Config() Config { return c.cfg }

// Wait blocks until this process's part of the cluster has stopped: in the
// master, until every worker is gone after a stop (signal or Shutdown); in a
// worker, until it has drained (dismissed, SIGTERM, or its master died:
// then it returns worker.ErrMasterDied).
func (c *Cluster) Wait() error {
	if c.w != nil {
		err := c.w.Wait()
		c.close()
		return err
	}
	c.m.Wait()
	c.close()
	return nil
}

// Shutdown stops gracefully and waits: in the master, every worker drains
// and exits (bounded by ctx and StopTimeout, then killed); in a worker, it
// drains this worker.
func (c *Cluster) Shutdown(ctx context.Context) error {
	if c.w != nil {
		return c.w.Shutdown(ctx)
	}
	err := c.m.Stop(ctx)
	c.close()
	return err
}

// close releases what Listen took in this process, once: the cache default
// if it is still the Cluster's space, the cache's work (the log writer logs
// what is left) and the master's socket.
func (c *Cluster) close() {
	c.closeOnce.Do(func() {
		c.in.release()
		c.cache.stop()
		if c.lnFile != nil {
			c.lnFile.Close()
		}
	})
}

// Up reports whether the cluster is in rotation (master: every initial
// worker warmed up and listening, no stop begun; worker: always false).
func (c *Cluster) Up() bool { return c.m != nil && c.m.Up() }

// Workers returns the state and latest heartbeat of every worker (master
// only; nil in a worker).
func (c *Cluster) Workers() []WorkerInfo {
	if c.m == nil {
		return nil
	}
	return c.m.Workers()
}

// Respawning returns the slots whose lost worker the master could not
// respawn yet (fork/exec failed: out of descriptors or memory) and keeps
// retrying with capped back-off (master only; nil in a worker).
func (c *Cluster) Respawning() []Respawn {
	if c.m == nil {
		return nil
	}
	return c.m.Respawning()
}

// AgentAddr returns the address the monitor's HAProxy agent-check responder
// is bound to (MonitorConfig.AgentAddr, with the port chosen for port 0), in
// the master; nil in a worker, without an agent-check, or when the monitor
// is disabled or did not start.
func (c *Cluster) AgentAddr() net.Addr {
	if c.mon == nil || c.mon.srv == nil {
		return nil
	}
	return c.mon.srv.AgentAddr()
}

// Pause asks worker pid to stop accepting and waits until it did; its
// in-flight requests finish.
func (c *Cluster) Pause(ctx context.Context, pid int) error {
	if c.m == nil {
		return ErrNotMaster
	}
	return c.m.Pause(ctx, pid)
}

// Resume asks a paused worker to accept again and waits until it does.
func (c *Cluster) Resume(ctx context.Context, pid int) error {
	if c.m == nil {
		return ErrNotMaster
	}
	return c.m.Resume(ctx, pid)
}

// Replace queues worker pid for replacement through the death queue (FIFO,
// one at a time, successor ready before the old one drains) and returns at
// once. Duplicate requests are ignored.
func (c *Cluster) Replace(pid int) error {
	if c.m == nil {
		return ErrNotMaster
	}
	return c.m.Replace(pid)
}

// RollingRestart replaces every worker through the death queue and waits
// until done or ctx ends. The master's pid does not change.
func (c *Cluster) RollingRestart(ctx context.Context) error {
	if c.m == nil {
		return ErrNotMaster
	}
	return c.m.RollingRestart(ctx)
}

// String describes the process's place in the cluster, for logs.
func (c *Cluster) String() string {
	return c.role.String() + " pid " + strconv.Itoa(os.Getpid()) + " slot " + strconv.Itoa(c.Slot())
}
