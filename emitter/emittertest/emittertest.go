// Package emittertest runs emitters across real processes in tests, without
// the cluster2 runtime: the test process is the master (it creates an arena
// and attaches a master emitter), and workers are the test binary
// re-executed (internal/xtesting) that attach to the arena's slots.
//
// In the test process:
//
//	m := emittertest.NewMaster(t, nil)
//	pid := m.Start(t, "worker", 1) // child "worker" in slot 1
//
// In the child (registered with xtesting.Main under "worker"):
//
//	em := emittertest.AttachWorker(nil)
//	em.On(...)
//	emittertest.Ready(em)   // NewMaster's WaitReady returns when it comes
package emittertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// EnvSlot tells a child which slot of the process table it joins.
const EnvSlot = "CLUSTER2_EMITTERTEST_SLOT"

// ReadyEvent is what Ready emits to the master.
const ReadyEvent = "emittertest.ready"

// Master is the test process's side: an arena, a master emitter, and the
// children it started. It must not be copied.
type Master struct {
	_       nocopy.NoCopy
	Arena   *shm.Arena
	Emitter *emitter.Emitter
	Cmds    []*exec.Cmd
	Pids    []int
	ready   chan int
}

// NewMaster creates an arena (16 MiB, 16 slots) and attaches a master
// emitter with opts (nil: 64 KiB rings); both are closed when the test
// ends.
func NewMaster(tb testing.TB, opts *emitter.Options) *Master {
	tb.Helper()
	a, err := shm.Create(shm.Options{Size: 16 << 20, Slots: 16, Name: "emittertest"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	p, err := a.Self()
	if err != nil {
		tb.Fatal(err)
	}
	if opts == nil {
		opts = &emitter.Options{RingSize: 64 << 10}
	}
	em, err := emitter.Open(context.Background(), a, p, emitter.RoleMaster, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { em.Close() })
	m := &Master{Arena: a, Emitter: em, ready: make(chan int, 64)}
	em.On(ReadyEvent, func(e emitter.Event) { m.ready <- e.From })
	return m
}

// Start runs child name of the test binary as the worker of slot (the arena
// as fd 3), arms the slot for it, and returns its pid. env is added to the
// child's environment.
func (m *Master) Start(tb testing.TB, name string, slot int, env ...string) int {
	tb.Helper()
	cmd := xtesting.Command(tb, name, []*os.File{m.Arena.File()}, append(env, EnvSlot+"="+strconv.Itoa(slot))...)
	xtesting.Start(tb, cmd)
	pid := cmd.Process.Pid
	if err := m.Emitter.AddWorker(context.Background(), pid, slot); err != nil {
		tb.Fatal(err)
	}
	m.Cmds = append(m.Cmds, cmd)
	m.Pids = append(m.Pids, pid)
	return pid
}

// WaitReady waits until n children called Ready (10 s at most).
func (m *Master) WaitReady(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		select {
		case <-m.ready:
		case <-time.After(10 * time.Second):
			tb.Fatal("emittertest: a worker was not ready within 10s")
		}
	}
}

// AttachWorker is the child's side: it opens the inherited arena (fd 3),
// joins the slot EnvSlot names and attaches a worker emitter (waiting up to
// 10 s for the master to arm the slot). It exits the process on failure.
func AttachWorker(opts *emitter.Options) *emitter.Emitter {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "emittertest: child %d: %s: %v\n", os.Getpid(), what, err)
		os.Exit(2)
	}
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fail("open arena", err)
	}
	slot, err := strconv.Atoi(os.Getenv(EnvSlot))
	if err != nil {
		fail("slot", err)
	}
	p, err := a.JoinSlot(slot, 1)
	if err != nil {
		fail("join", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	em, err := emitter.Open(ctx, a, p, emitter.RoleWorker, opts)
	if err != nil {
		fail("attach", err)
	}
	return em
}

// Ready tells the master that the child's listeners are in place.
func Ready(em *emitter.Emitter) {
	if err := em.To(emitter.Master).Emit(ReadyEvent); err != nil {
		fmt.Fprintf(os.Stderr, "emittertest: child %d: ready: %v\n", os.Getpid(), err)
		os.Exit(2)
	}
}

// WaitMaster blocks until the master is gone (or limit passes), checking
// every 20 ms.
func WaitMaster(em *emitter.Emitter, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for len(em.Peers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
