package shm_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/shm/shmtest"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){
		"lockloop":     childLockLoop,
		"holdforever":  childHoldForever,
		"joinoutoffds": childJoinOutOfFDs,
		"resumebefore": childResumeBefore,
		"resumeafter":  childResumeAfter,
	})
}

// guarded is the test's structure in the arena: a lock and two words that
// every holder sets to the same value, one after the other, so that a holder
// killed between the two stores leaves a detectable half-done write.
type guarded struct {
	lock       shm.Lock
	a, b       atomic.Uint64
	ops        atomic.Uint64
	recoveries atomic.Uint64
	repairs    atomic.Uint64
	heldBy     atomic.Uint64
}

const guardedName = "locktest"

func guardedRegion(tb testing.TB, a *shm.Arena) *guarded {
	off, created, err := a.Region(context.Background(), guardedName, 128, nil)
	if err != nil {
		tb.Fatalf("region: %v", err)
	}
	if created {
		if err := a.RegisterLocks(context.Background(), off, 1, shm.LockSize); err != nil {
			tb.Fatalf("register: %v", err)
		}
	}
	return shm.Ptr[guarded](a, off)
}

func openInherited() (*shm.Arena, *guarded, *shm.Proc) {
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	off, _, err := a.Region(context.Background(), guardedName, 128, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: region:", err)
		os.Exit(2)
	}
	p, err := a.Self()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: join:", err)
		os.Exit(2)
	}
	return a, shm.Ptr[guarded](a, off), p
}

// childLockLoop takes the lock over and over; it exits with status 3 if it
// ever waits more than 3 s for it (a hang), and repairs half-done writes.
func childLockLoop() {
	_, g, p := openInherited()
	for i := uint64(1); ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		recovered, err := g.lock.Lock(ctx, p)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: lock:", err)
			os.Exit(3)
		}
		if recovered {
			g.recoveries.Add(1)
			if g.a.Load() != g.b.Load() {
				g.b.Store(g.a.Load()) // roll forward
				g.repairs.Add(1)
			}
		} else if g.a.Load() != g.b.Load() {
			fmt.Fprintln(os.Stderr, "child: torn state under a lock that was not recovered")
			os.Exit(4)
		}
		v := uint64(p.Pid())<<32 | i
		g.a.Store(v)
		for range rand.IntN(4000) { // hold the lock for a while
			g.ops.Load()
		}
		g.b.Store(v)
		g.ops.Add(1)
		g.lock.Unlock(p)
	}
}

// childHoldForever takes the lock, says so, and sleeps.
func childHoldForever() {
	_, g, p := openInherited()
	if _, err := g.lock.Lock(context.Background(), p); err != nil {
		os.Exit(3)
	}
	g.a.Store(1) // half a write
	g.heldBy.Store(uint64(p.Pid()))
	time.Sleep(time.Hour)
}

type child struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(t *testing.T, a *shm.Arena, name string) *child {
	cmd := xtesting.Command(t, name, []*os.File{a.File()})
	xtesting.Start(t, cmd)
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c
}

func slotOf(a *shm.Arena, pid int) int {
	for _, s := range a.Slots() {
		if s.Pid == pid {
			return s.Slot
		}
	}
	return -1
}

// TestLockSurvivesKill9 kills lock holders with SIGKILL at random moments, many
// times, half of the time letting the waiters take over and half of the time
// releasing the dead slot as the master would; nobody may hang and every torn
// write must be seen as recovered.
func TestLockSurvivesKill9(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	g := guardedRegion(t, a)
	// Kill at least minKills times, and on until the lock was recovered from a
	// dead holder at least minRecoveries times (a kill may hit a child that
	// does not hold the lock).
	minKills, minRecoveries, maxKills := 40, 10, 2000
	if testing.Short() {
		minKills, minRecoveries = 10, 3
	}
	kills := 0
	children := []*child{spawn(t, a, "lockloop"), spawn(t, a, "lockloop"), spawn(t, a, "lockloop")}
	for _, c := range children {
		if !xtesting.Eventually(5*time.Second, func() bool { return slotOf(a, c.cmd.Process.Pid) >= 0 }) {
			t.Fatalf("child %d never joined", c.cmd.Process.Pid)
		}
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for k := 0; k < minKills || g.recoveries.Load() < uint64(minRecoveries); k++ {
		if k == maxKills {
			t.Fatalf("%d kills, only %d recoveries", k, g.recoveries.Load())
		}
		kills++
		before := g.ops.Load()
		if !xtesting.Eventually(2*time.Second, func() bool { return g.ops.Load() > before+10 }) {
			t.Fatalf("kill %d: no progress for 2 s (ops stuck at %d): a survivor hangs", k, before)
		}
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
		i := rng.IntN(len(children))
		c := children[i]
		pid := c.cmd.Process.Pid
		slot := slotOf(a, pid)
		if slot < 0 {
			t.Fatalf("kill %d: child %d holds no live slot", k, pid)
		}
		c.cmd.Process.Signal(syscall.SIGKILL)
		if err := <-c.done; err == nil || !isKilled(c.cmd) {
			t.Fatalf("child %d ended with %v, not by our SIGKILL", pid, err)
		}
		if k%2 == 0 {
			if err := a.ReleaseSlot(slot); err != nil {
				t.Fatalf("ReleaseSlot(%d) of dead pid %d: %v", slot, pid, err)
			}
		}
		for _, o := range children {
			select {
			case err := <-o.done:
				if o != c {
					t.Fatalf("survivor %d exited: %v (status 3 = hung on the lock, 4 = torn state)", o.cmd.Process.Pid, err)
				}
			default:
			}
		}
		children[i] = spawn(t, a, "lockloop")
		// Wait for the new child to join before the next kill: a child still
		// in Join reclaims the slot of a dead process when no slot is free
		// (dead slots pile up when we leave them to the waiters), and could
		// take the slot we are about to release (ReleaseSlot then rightly
		// says ErrSlotBusy: it belongs to the live newcomer).
		npid := children[i].cmd.Process.Pid
		if !xtesting.Eventually(5*time.Second, func() bool { return slotOf(a, npid) >= 0 }) {
			t.Fatalf("kill %d: respawned child %d never joined", k, npid)
		}
	}
	for _, c := range children {
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
	}
	p, _ := a.Self()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := g.lock.Lock(ctx, p); err != nil {
		t.Fatalf("final lock: %v", err)
	}
	if g.a.Load() != g.b.Load() {
		g.b.Store(g.a.Load())
	}
	g.lock.Unlock(p)
	t.Logf("%d kills, %d ops, %d recoveries, %d repairs of torn writes", kills, g.ops.Load(), g.recoveries.Load(), g.repairs.Load())
}

func isKilled(cmd *exec.Cmd) bool {
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// TestLockTakeoverReportsRecovery: the owner dies holding the lock; a waiter
// takes it over (zombie and reaped owner alike) or the master releases the slot
// first; either way the new owner is told it recovered the lock.
func TestLockTakeoverReportsRecovery(t *testing.T) {
	for _, mode := range []string{"zombie", "reaped", "released"} {
		t.Run(mode, func(t *testing.T) {
			a := shmtest.NewArena(t, 1<<20)
			g := guardedRegion(t, a)
			c := spawn(t, a, "holdforever")
			pid := c.cmd.Process.Pid
			if !xtesting.Eventually(5*time.Second, func() bool { return g.heldBy.Load() == uint64(pid) }) {
				t.Fatal("child never took the lock")
			}
			slot := slotOf(a, pid)
			if mode == "zombie" {
				syscall.Kill(pid, syscall.SIGKILL) // not reaped: the child stays a zombie
				time.Sleep(20 * time.Millisecond)
			} else {
				c.cmd.Process.Signal(syscall.SIGKILL)
				<-c.done
			}
			if mode == "released" {
				if err := a.ReleaseSlot(slot); err != nil {
					t.Fatalf("ReleaseSlot: %v", err)
				}
				if got := g.lock.Owner(); got != 0 {
					t.Fatalf("Owner after ReleaseSlot = %d; want 0", got)
				}
			}
			p, _ := a.Self()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			recovered, err := g.lock.Lock(ctx, p)
			if err != nil || !recovered {
				t.Fatalf("Lock after the owner's death = %v, %v; want recovered", recovered, err)
			}
			t.Logf("took over in %v", time.Since(start))
			g.lock.Unlock(p)
			if recovered, _ := g.lock.Lock(ctx, p); recovered {
				t.Fatal("a lock unlocked normally reports recovered")
			}
			g.lock.Unlock(p)
		})
	}
}

// TestLockHolderAliveWhileOutOfDescriptors: a waiter whose process is out of
// file descriptors (EMFILE: a server under a connection flood) cannot read
// the holder's /proc/PID/stat; it must not take the lock of the live holder
// (it did: any open failure read as death), and it must still take over from
// a dead one.
func TestLockHolderAliveWhileOutOfDescriptors(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	g := guardedRegion(t, a)
	c := spawn(t, a, "holdforever") // locks, then sleeps an hour holding it
	pid := c.cmd.Process.Pid
	if !xtesting.Eventually(5*time.Second, func() bool { return g.heldBy.Load() == uint64(pid) }) {
		t.Fatal("child never took the lock")
	}
	p, _ := a.Self()
	lockOutOfFDs := func() (bool, error) {
		restore := shm.ExhaustDescriptorsForTest(t)
		defer restore()
		// The waiter checks the holder at 1, 2, 4, 8, 16, then every 20 ms.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return g.lock.Lock(ctx, p)
	}
	_, err := lockOutOfFDs()
	if err == nil {
		g.lock.Unlock(p)
		t.Fatalf("a lock held by live pid %d was taken over by a process out of descriptors", pid)
	}
	if !errors.Is(err, shm.ErrTimeout) {
		t.Fatalf("Lock of a live holder's lock = %v; want ErrTimeout", err)
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	recovered, err := lockOutOfFDs()
	if err != nil || !recovered {
		t.Fatalf("Lock after the holder died, out of descriptors = %v, %v; want recovered", recovered, err)
	}
	g.lock.Unlock(p)
}

func TestLockContextEnds(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	g := guardedRegion(t, a)
	holder, _ := a.Join(0)
	waiter, _ := a.Join(0)
	if _, err := g.lock.Lock(context.Background(), holder); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := g.lock.Lock(ctx, waiter)
	if !errors.Is(err, shm.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock past its deadline = %v; want ErrTimeout and DeadlineExceeded", err)
	}
	if ok, _ := g.lock.TryLock(waiter); ok {
		t.Fatal("TryLock of a held lock succeeded")
	}
	g.lock.Unlock(holder)
	if ok, rec := g.lock.TryLock(waiter); !ok || rec {
		t.Fatalf("TryLock of a free lock = %v, %v", ok, rec)
	}
	defer func() {
		if recover() == nil {
			t.Error("Unlock by a non-owner did not panic")
		}
	}()
	g.lock.Unlock(holder)
}

// TestLockMutualExclusion: goroutines acting as distinct processes of one
// arena increment a plain counter under the lock.
func TestLockMutualExclusion(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	g := guardedRegion(t, a)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for range workers {
		p, err := a.Join(0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range each {
				if _, err := g.lock.Lock(context.Background(), p); err != nil {
					t.Error(err)
					return
				}
				v := g.a.Load()
				g.a.Store(v + 1)
				g.lock.Unlock(p)
			}
		})
	}
	wg.Wait()
	if got := g.a.Load(); got != workers*each {
		t.Fatalf("counter = %d; want %d", got, workers*each)
	}
}

func TestEventWakesOnlyAnnouncedSleepers(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	off, err := a.Alloc(context.Background(), 64)
	if err != nil {
		t.Fatal(err)
	}
	ev := shm.Ptr[shm.Event](a, off)
	flag := shm.Ptr[atomic.Uint32](a, off+8)
	if ev.Wake() {
		t.Fatal("Wake with no sleeper made a system call")
	}
	woke := make(chan error)
	go func() {
		for flag.Load() == 0 {
			tk := ev.Prepare()
			if flag.Load() != 0 {
				ev.Cancel()
				break
			}
			if err := ev.Sleep(tk, 5*time.Second); err != nil {
				woke <- err
				return
			}
		}
		woke <- nil
	}()
	if !xtesting.Eventually(5*time.Second, func() bool { return ev.Waiters() == 1 }) {
		t.Fatal("sleeper never announced itself")
	}
	flag.Store(1)
	if !ev.Wake() {
		t.Fatal("Wake with an announced sleeper made no system call")
	}
	if err := <-woke; err != nil {
		t.Fatalf("sleeper: %v", err)
	}
	tk := ev.Prepare()
	if err := ev.Sleep(tk, time.Millisecond); !errors.Is(err, shm.ErrTimeout) {
		t.Fatalf("Sleep without a wake = %v; want ErrTimeout", err)
	}
	if ev.Waiters() != 0 {
		t.Fatalf("Waiters after Sleep = %d; want 0", ev.Waiters())
	}
}
