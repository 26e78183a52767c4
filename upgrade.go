package cluster2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/status"
	"golang.org/x/sys/unix"
)

// The in-place upgrade (docs/runtime.md, "Upgrading in place"). The master
// execs a new binary with its own pid: the image about to exec checks the new
// binary, holds its master (master.Freeze), hands its descriptors and its
// children over (proc.Handover, in the environment) and calls execve; the
// new image adopts them (listenAdopted: the arena by its memfd, its slot by
// shm.Arena.Resume, the cache, the emitter's rings, the monitor's sockets,
// the children by master.Adopt), and then replaces every worker through the
// death queue, successor first. To the workers, the cache and every ring the
// master never died: its pid, its start time, its arena slot and its owner
// generation are the same.
//
// The way back: if the new image fails before every worker runs it (it
// cannot adopt, its workers do not come up, it panics in the upgrade's own
// goroutine) it execs the previous binary, through the O_PATH descriptor the
// previous image kept open for it, with a handover that says why; that image
// adopts the cluster again and replaces the workers the new build had
// started. What no process can survive is said in docs/runtime.md.

// ErrUpgradeFailed is returned (and reported in the "upgrade-done" event and
// the upgrade status) when an in-place upgrade did not end with every worker
// on the new build: the message says why, and the cluster runs on the
// binary it ran before.
var ErrUpgradeFailed = errors.New("cluster2: in-place upgrade failed")

// Handover reasons (proc.Handover.Why).
const (
	whyUpgrade = "upgrade"
	whyBack    = "back"
)

// UpgradeStatus is the state of the last in-place upgrade, as /status shows
// it (the built-in status StatusUpgrade), the dashboard shows it and
// Cluster.UpgradeStatus returns it: State is "" (none since the master
// started), "checking", "handing over", "replacing" (the workers, one at a
// time), "done" or "failed" (Error says why).
type UpgradeStatus = monitor.UpgradeInfo

// StatusUpgrade is the master's built-in status with the last in-place
// upgrade's UpgradeStatus.
const StatusUpgrade = status.NameUpgrade

// adopting sets the upgrader of an adopting image up (runMaster, before the
// master or the monitor can start another upgrade): the upgrade it adopted
// from is running, replacing the workers, until finishUpgrade ends it.
func (u *upgrader) adopting(ho *handover) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ho, u.running = ho, true
	u.st = UpgradeStatus{State: "replacing", From: ho.Upgrade.From, To: ho.Upgrade.To, Started: ho.Upgrade.Started}
}

// upgrader is the Cluster's in-place upgrade: one at a time.
type upgrader struct {
	mu      sync.Mutex
	running bool
	st      UpgradeStatus
	ho      *handover // the handover this image adopted from, nil after a fresh start
}

func (u *upgrader) status() UpgradeStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st
}

func (u *upgrader) set(f func(*UpgradeStatus)) {
	u.mu.Lock()
	f(&u.st)
	u.mu.Unlock()
}

// UpgradeStatus returns the state of the last in-place upgrade (master
// only; the zero value in a worker or before any).
func (c *Cluster) UpgradeStatus() UpgradeStatus { return c.upgrade.status() }

// Upgrade upgrades the master in place to the binary at Config.Executable
// (the path a deploy renamed the new build over): it checks the binary, then
// replaces this process's image with it (execve: the pid stays), handing the
// running cluster over; the new image replaces every worker with one of the
// new build, successor first. On success Upgrade does not return: this
// image is gone, and the outcome is the new image's (UpgradeStatus,
// /status, the "upgrade-done" event). It returns an error when the upgrade
// did not begin — the check failed, another upgrade or a replacement holds
// the master (master.ErrUpgrading), a stop began, or the execve failed —
// and the cluster runs on as it was. SIGUSR2 calls it, and the monitor's
// upgrade action. Master only.
func (c *Cluster) Upgrade(ctx context.Context) error {
	if c.m == nil {
		return ErrNotMaster
	}
	exec, err := c.prepareUpgrade(ctx)
	if err != nil {
		return err
	}
	return exec()
}

// prepareUpgrade checks the new binary and holds the master; the function it
// returns hands over and execs (returning only if the execve failed).
func (c *Cluster) prepareUpgrade(ctx context.Context) (func() error, error) {
	u := &c.upgrade
	u.mu.Lock()
	if u.running {
		u.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrUpgradeFailed, master.ErrUpgrading)
	}
	u.running = true
	u.st = UpgradeStatus{State: "checking", From: c.buildString(), Started: time.Now()}
	u.mu.Unlock()
	fail := func(err error) (func() error, error) {
		err = fmt.Errorf("%w: %w", ErrUpgradeFailed, err)
		u.set(func(s *UpgradeStatus) { s.State, s.Error, s.Ended = "failed", err.Error(), time.Now() })
		u.mu.Lock()
		u.running = false
		u.mu.Unlock()
		c.cfg.Logger.Error("cluster2: in-place upgrade refused; the cluster runs on as it was", "err", err)
		return nil, err
	}
	exe := c.cfg.Executable
	to, err := checkBinary(ctx, c.cfg, exe)
	if err != nil {
		return fail(err)
	}
	u.set(func(s *UpgradeStatus) { s.To, s.State = to, "handing over" })
	children, err := c.m.Freeze(ctx)
	if err != nil {
		return fail(err)
	}
	prev, err := openRunningBinary() // no close-on-exec: the way back
	if err != nil {
		c.m.Thaw()
		return fail(fmt.Errorf("keeping the running binary open for the way back: %w", err))
	}
	st := u.status()
	ho := proc.Handover{Why: whyUpgrade, Exe: exe, Children: children, Previous: prev, Workers: c.m.Target(),
		Upgrade: proc.UpgradeState{ID: st.Started.UnixNano(), From: st.From, To: to, Started: st.Started}}
	return func() error {
		err := c.execImage(exe, ho)
		unix.Close(prev)
		c.m.Thaw()
		_, err = fail(err)
		c.m.UpgradeEnded(err) // Freeze said it began: the lifecycle (the service manager's READY=1) hears it ended
		return err
	}, nil
}

// execImage hands the cluster over to the binary at exe (the children of
// ho's, this process's descriptors) and execs it. It returns only when the
// execve failed; the master is still frozen then.
func (c *Cluster) execImage(exe string, ho proc.Handover) error {
	ho.Token = c.self.Token()
	var dups []int
	defer func() {
		for _, fd := range dups {
			unix.Close(fd)
		}
	}()
	keep := func(conn syscall.Conn) (int, error) {
		if conn == nil {
			return -1, nil
		}
		fd, err := dupForExec(conn)
		if err == nil {
			dups = append(dups, fd)
		}
		return fd, err
	}
	deathR, deathW := c.m.DeathPipe()
	var mon, agent syscall.Conn
	if c.mon != nil && c.mon.srv != nil {
		ln, ag := c.mon.srv.Listeners()
		mon, _ = ln.(syscall.Conn)
		if ag != nil {
			agent, _ = ag.(syscall.Conn)
		}
		ho.ProfDir = c.mon.dir
		ho.MarkedDown = c.mon.srv.ECV().State().MarkedDown
	}
	var err error
	for _, x := range []struct {
		fd   *int
		conn syscall.Conn
	}{{&ho.Listener, c.lnFile}, {&ho.Arena, c.arena.File()}, {&ho.DeathR, deathR}, {&ho.DeathW, deathW},
		{&ho.Monitor, mon}, {&ho.Agent, agent}} {
		if *x.fd, err = keep(x.conn); err != nil {
			return fmt.Errorf("handing over a descriptor: %w", err)
		}
	}
	c.cfg.Logger.Info("cluster2: in-place upgrade: executing the new image", "why", ho.Why, "exe", exe,
		"children", len(ho.Children), "to", ho.Upgrade.To)
	return execWithHandover(exe, ho)
}

// execWithHandover execs exe with this process's arguments and environment
// and the handover h; it returns only when the execve failed.
func execWithHandover(exe string, h proc.Handover) error {
	env, err := h.EnvWith(os.Environ())
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	return fmt.Errorf("execve %s: %w", exe, err)
}

// dupForExec returns a duplicate of conn's descriptor that survives execve
// (no close-on-exec), numbered 10 or above (the children's fixed numbers
// stay free). It shares the open file description: the listener's
// non-blocking mode is unchanged.
func dupForExec(conn syscall.Conn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD, 10) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// handover is the handover this image adopted from, with its descriptors
// opened.
type handover struct {
	proc.Handover
	deathR, deathW *os.File
	monLn, agentLn net.Listener
}

// monitorParts returns what the monitor takes over, nil for a fresh start.
func (ho *handover) monitorParts() *monitorParts {
	if ho == nil {
		return nil
	}
	return &monitorParts{ln: ho.monLn, agent: ho.agentLn, dir: ho.ProfDir, markedDown: ho.MarkedDown}
}

// spawnExe is the path the adopting master spawns its children from: the
// binary on disk after an upgrade; the previous binary (its descriptor)
// on the way back, whose file on disk is the failed new build. The path
// names the master's descriptor by the master's pid, not /proc/self: a
// child resolves the path in its execve, after its own descriptors 3, 4,
// 5, ... were put in place, and the master's number may be one of them
// (TestUpgradeFaults: the death pipe at 5 made every respawn EACCES).
func (ho *handover) spawnExe() string {
	if ho.Why == whyBack && ho.Previous >= 0 {
		return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(ho.Previous)
	}
	return ho.Exe
}

// listenAdopted is Listen in the next image of an upgrading master: it
// adopts the running cluster from the handover. Whatever fails before the
// cluster is adopted sends the master back to the previous binary (goBack
// returns only if that execve fails too).
func listenAdopted(ctx context.Context, c Config, h proc.Handover, herr error) (*Cluster, error) {
	log := c.Logger.With("why", h.Why, "pid", os.Getpid())
	log.Info("cluster2: adopting the running cluster from the previous image of this process", "children", len(h.Children))
	ho := &handover{Handover: h}
	// On a failure nothing is closed nor unmapped: goroutines this image
	// started may still use the arena, and the execve of the way back ends
	// them all (without a way back the process is left as it is: its
	// workers run on until it exits).
	fail := func(err error) (*Cluster, error) {
		err = fmt.Errorf("%w: adopting: %w", ErrUpgradeFailed, err)
		if h.Why == whyBack || h.Previous < 0 {
			log.Error("cluster2: cannot adopt the cluster, and there is no way back", "err", err)
			return nil, err
		}
		return nil, goBackBeforeAdoption(log, h, err)
	}
	if herr != nil {
		return fail(herr)
	}
	if c.Executable != h.Exe && h.Exe != "" {
		c.Executable = h.Exe // the path the upgrade named: later upgrades read it again
	}
	// The listener's address, from a duplicate: no *os.File may own a
	// handed-over number, whose finalizer would close it again once it was
	// closed below and reused (the soak saw the control server's socket,
	// and the next upgrade's, closed by a GC). The number itself stays open
	// until adopted: the way back needs it.
	f, err := dupFile(h.Listener, "listener")
	if err != nil {
		return fail(err)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fail(fmt.Errorf("listener: %w", err))
	}
	addr := ln.Addr()
	ln.Close()
	af, err := dupFile(h.Arena, "arena")
	if err != nil {
		return fail(err)
	}
	a, err := shm.Open(af)
	if err != nil {
		return fail(fmt.Errorf("arena: %w", err))
	}
	self, err := a.Resume(0, h.Token)
	if err != nil {
		return fail(fmt.Errorf("arena: %w", err))
	}
	if ho.deathR, err = dupFile(h.DeathR, "death-pipe-r"); err == nil {
		ho.deathW, err = dupFile(h.DeathW, "death-pipe-w")
	}
	if err == nil && h.Monitor >= 0 {
		ho.monLn, err = fileListener(h.Monitor)
	}
	if err == nil && h.Agent >= 0 {
		ho.agentLn, err = fileListener(h.Agent)
	}
	if err != nil {
		return fail(err)
	}
	lf, err := dupFile(h.Listener, "listener:"+addr.String())
	if err != nil {
		return fail(err)
	}
	cl, err := runAdopting(ctx, c, masterParts{f: lf, addr: addr, a: a, self: self, ho: ho})
	if err != nil {
		return fail(err)
	}
	// Adopted: the handed-over numbers are closed (their dups serve), the
	// previous binary's descriptor is kept (close-on-exec) for the way back.
	for _, fd := range []int{h.Listener, h.Arena, h.DeathR, h.DeathW, h.Monitor, h.Agent} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if h.Previous >= 0 {
		proc.CloseOnExec(h.Previous)
	}
	go cl.finishUpgrade()
	return cl, nil
}

// runAdopting is runMaster for an adopting image, with a panic on the way
// (in the new build's code that the adoption runs: its Config.OnEvent at
// EventAdopted, say) turned into an error: the caller goes back to the
// previous binary, whose execve ends whatever this image had started.
func runAdopting(ctx context.Context, c Config, p masterParts) (cl *Cluster, err error) {
	defer func() {
		if r := recover(); r != nil {
			cl, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return runMaster(ctx, c, p)
}

// dupFile returns a close-on-exec duplicate of fd as a file.
func dupFile(fd int, name string) (*os.File, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 10)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return os.NewFile(uintptr(d), name), nil
}

// fileListener returns a listener on a duplicate of fd.
func fileListener(fd int) (net.Listener, error) {
	f, err := dupFile(fd, "monitor")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileListener(f)
}

// finishUpgrade is the adopting image's second half: replace every worker
// (after an upgrade), or every worker the failed build started (on the way
// back). A failure, or a panic on the way, sends
// the master back (after an upgrade).
func (c *Cluster) finishUpgrade() {
	ho := c.upgrade.ho
	log := c.cfg.Logger
	defer func() {
		if r := recover(); r != nil && ho.Why == whyUpgrade {
			c.goBack(fmt.Errorf("%w: panic: %v", ErrUpgradeFailed, r))
		} else if r != nil {
			panic(r)
		}
	}()
	// After an upgrade every worker is replaced (each is then a child this
	// image spawned, whatever binary it ran); on the way back only those
	// the failed build started.
	old := c.workersNotOnThisBinary()
	if ho.Why == whyUpgrade {
		old = old[:0]
		for _, w := range c.m.Workers() {
			old = append(old, w.Pid)
		}
	}
	var err error
	if len(old) > 0 {
		err = c.m.ReplaceWorkers(context.Background(), old)
	}
	if ho.Why == whyBack {
		err = fmt.Errorf("%w: %s", ErrUpgradeFailed, ho.Reason)
		if left := c.workersNotOnThisBinary(); len(left) > 0 {
			err = fmt.Errorf("%w (and %d workers still run the new build)", err, len(left))
		}
		c.endUpgrade(err)
		return
	}
	if err == nil {
		if left := c.workersNotOnThisBinary(); len(left) > 0 {
			err = fmt.Errorf("workers %v do not run the new build (paused workers are not replaced)", left)
		}
	}
	if err != nil {
		c.goBack(err)
		return
	}
	log.Info("cluster2: in-place upgrade done: every worker runs the new build", "to", ho.Upgrade.To)
	c.endUpgrade(nil)
}

// endUpgrade records the upgrade's outcome and tells the lifecycle.
func (c *Cluster) endUpgrade(err error) {
	c.upgrade.set(func(s *UpgradeStatus) {
		s.State, s.Ended = "done", time.Now()
		if err != nil {
			s.State, s.Error = "failed", err.Error()
		}
	})
	c.upgrade.mu.Lock()
	c.upgrade.running = false
	c.upgrade.mu.Unlock()
	c.m.UpgradeEnded(err)
}

// goBack execs the previous binary with a handover saying why (the adopting
// image, after the cluster was adopted). If that fails the cluster runs on
// this image, and says so.
func (c *Cluster) goBack(reason error) {
	ho := c.upgrade.ho
	log := c.cfg.Logger
	log.Error("cluster2: in-place upgrade failed: going back to the previous binary", "err", reason)
	c.upgrade.set(func(s *UpgradeStatus) { s.State = "handing over" })
	children, err := c.m.Freeze(context.Background())
	if err == nil {
		h := proc.Handover{Why: whyBack, Reason: reason.Error(), Exe: ho.Exe, Children: children, Previous: ho.Previous, Upgrade: ho.Upgrade,
			Workers: c.m.Target()}
		if err = proc.KeepOnExec(ho.Previous); err == nil { // the back image spawns from it
			err = c.execImage("/proc/self/fd/"+strconv.Itoa(ho.Previous), h)
			proc.CloseOnExec(ho.Previous)
		}
		c.m.Thaw()
	}
	log.Error("cluster2: cannot go back to the previous binary: the cluster runs on this one", "err", err)
	c.endUpgrade(fmt.Errorf("%w; and going back failed: %w", reason, err))
}

// goBackBeforeAdoption execs the previous binary with the handover it got,
// saying why (the adopting image, before it could adopt). It returns only
// when that execve failed.
func goBackBeforeAdoption(log interface{ Error(string, ...any) }, h proc.Handover, reason error) error {
	log.Error("cluster2: in-place upgrade failed before adopting: going back to the previous binary", "err", reason)
	h.Why, h.Reason = whyBack, reason.Error()
	err := execWithHandover("/proc/self/fd/"+strconv.Itoa(h.Previous), h)
	return fmt.Errorf("%w; and going back failed: %w", reason, err)
}

// workersNotOnThisBinary returns the workers whose executable is not the
// file this process runs (/proc/<pid>/exe against /proc/self/exe: the
// inode, whatever was renamed over the path since).
func (c *Cluster) workersNotOnThisBinary() []int {
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		return nil
	}
	var out []int
	for _, w := range c.m.Workers() {
		fi, err := os.Stat("/proc/" + strconv.Itoa(w.Pid) + "/exe")
		if err == nil && !os.SameFile(fi, self) {
			out = append(out, w.Pid)
		}
	}
	return out
}

// buildString describes the running build for the upgrade's From.
func (c *Cluster) buildString() string { return describeBuild(c.Build()) }

// describeBuild is a build on one line: version, revision, Go, layout.
func describeBuild(b BuildInfo) string {
	s := b.Version
	if r := b.ShortRevision(); r != "" {
		s += " " + r
	}
	return s + " (" + b.GoVersion + ", " + b.Layout.String() + ")"
}

// checkBinary checks the binary at exe before an upgrade runs it (Check,
// bounded by ReplaceTimeout: missing, not executable, another
// architecture, exiting at start, another layout) and returns its build, as
// it reports it.
func checkBinary(ctx context.Context, c Config, exe string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ReplaceTimeout)
	defer cancel()
	info, err := Check(ctx, exe, nil, nil)
	if err != nil {
		return "", err
	}
	return describeBuild(info), nil
}
