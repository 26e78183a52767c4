package emitter_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/emitter/emittertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/ring"
)

var children = map[string]func(){
	"worker": childWorker,
}

// testCluster is a master emitter in the test process with workers started
// as re-executed children, each in its own slot.
type testCluster struct {
	*emittertest.Master
	em   *emitter.Emitter
	cmds []*exec.Cmd
	pids []int
}

func newTestCluster(t *testing.T, workers int, opts *emitter.Options) *testCluster {
	t.Helper()
	m := emittertest.NewMaster(t, opts)
	for i := 1; i <= workers; i++ {
		m.Start(t, "worker", i)
	}
	m.WaitReady(t, workers)
	return &testCluster{Master: m, em: m.Emitter, cmds: m.Cmds, pids: m.Pids}
}

// childWorker attaches as the worker of its slot and answers the test's
// commands until told to quit or its master dies.
func childWorker() {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "child %d: %s: %v\n", os.Getpid(), what, err)
		os.Exit(2)
	}
	em := emittertest.AttachWorker(nil)
	me := os.Getpid()
	quit := make(chan struct{})
	em.On("quit", func(emitter.Event) { close(quit) })
	// ping → pong to the sender, with this pid and the ping's argument.
	em.On("ping", func(e emitter.Event) {
		var n int
		e.Decode(&n)
		em.To(emitter.Pid(e.From)).Emit("pong", me, n)
	})
	// relay(targets...) → hello to those targets (pids; 0 means Workers).
	em.On("relay", func(e emitter.Event) {
		var pids []int
		e.Decode(&pids)
		var ts []emitter.Target
		for _, pid := range pids {
			if pid == 0 {
				ts = append(ts, emitter.Workers)
			} else {
				ts = append(ts, emitter.Pid(pid))
			}
		}
		if err := em.To(ts...).Emit("hello", me); err != nil {
			fail("relay", err)
		}
	})
	// hello → tell the master who greeted whom.
	em.On("hello", func(e emitter.Event) {
		em.To(emitter.Master).Emit("greeted", e.From, me)
	})
	// burst(n, name) → n events name(i) to the master.
	em.On("burst", func(e emitter.Event) {
		var n int
		var name string
		e.Decode(&n, &name)
		for i := range n {
			if err := em.To(emitter.Master).Emit(name, i); err != nil {
				fail("burst", err)
			}
		}
	})
	// seq(i): check the master's burst arrives in order; done(n) reports.
	// seq(i): check that the master's burst arrives in order; seq-count
	// reports how far it got (another listener: the master asks until all
	// arrived).
	var next, bad atomic.Int64
	em.On("seq", func(e emitter.Event) {
		i, _ := emitter.Arg[int64](e, 0)
		if i != next.Load() {
			bad.Add(1)
		}
		next.Store(i + 1)
	})
	em.On("seq-count", func(e emitter.Event) {
		em.To(emitter.Master).Emit("seq-count", next.Load(), bad.Load())
	})
	// hosts-ping(n) → hosts-pong to this worker's master: this pid, the
	// event's host and sender, n.
	em.On("hosts-ping", func(e emitter.Event) {
		n, _ := emitter.Arg[int](e, 0)
		em.To(emitter.Master).Emit("hosts-pong", me, e.Host, e.From, n)
	})
	// emit-hosts(n, size) → hosts-ping(n) to AllHosts, with size bytes of
	// padding; emitted(n, the error's text, ErrBackplane?, ErrNoBackplane?,
	// ErrTooLarge?) to the master.
	em.On("emit-hosts", func(e emitter.Event) {
		var n, size int
		e.Decode(&n, &size)
		err := em.To(emitter.AllHosts).Emit("hosts-ping", n, strings.Repeat("x", size))
		text := ""
		if err != nil {
			text = err.Error()
		}
		em.To(emitter.Master).Emit("emitted", n, text, errors.Is(err, emitter.ErrBackplane),
			errors.Is(err, emitter.ErrNoBackplane), errors.Is(err, emitter.ErrTooLarge))
	})
	emittertest.Ready(em)
	select {
	case <-quit:
	case <-time.After(2 * time.Minute):
	}
}

// The master emits to all (itself and two workers); each answers; the
// master collects three answers.
func TestEmitToAllCollectsThree(t *testing.T) {
	c := newTestCluster(t, 2, nil)
	me := os.Getpid()
	c.em.On("ping", func(e emitter.Event) {
		var n int
		e.Decode(&n)
		c.em.To(emitter.Pid(e.From)).Emit("pong", me, n)
	})
	fn, pongs := collect(8)
	c.em.On("pong", fn)
	if err := c.em.Emit("ping", 42); err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for range 3 {
		e := recv(t, pongs)
		var pid, n int
		if err := e.Decode(&pid, &n); err != nil || n != 42 || pid != e.From {
			t.Fatalf("pong %s from %d: %v; want [pid, 42]", e.Args, e.From, err)
		}
		got[pid] = true
	}
	for _, pid := range append([]int{me}, c.pids...) {
		if !got[pid] {
			t.Fatalf("answers from %v; want the master %d and workers %v", got, me, c.pids)
		}
	}
	select {
	case e := <-pongs:
		t.Fatalf("a fourth answer: %+v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

// A worker reaches another worker by pid, and every worker through
// Workers; the master routes.
func TestWorkerToWorker(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	fn, greeted := collect(16)
	c.em.On("greeted", fn)
	a, b := c.pids[0], c.pids[1]
	if err := c.em.To(emitter.Pid(a)).Emit("relay", []int{b}); err != nil {
		t.Fatal(err)
	}
	e := recv(t, greeted)
	var from, to int
	e.Decode(&from, &to)
	if from != a || to != b {
		t.Fatalf("greeted %d→%d; want %d→%d", from, to, a, b)
	}
	// Workers from a worker: every worker, the sender included, once each.
	if err := c.em.To(emitter.Pid(a)).Emit("relay", []int{0}); err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for range 3 {
		e := recv(t, greeted)
		e.Decode(&from, &to)
		if from != a {
			t.Fatalf("greeted from %d; want %d", from, a)
		}
		seen[to]++
	}
	for _, pid := range c.pids {
		if seen[pid] != 1 {
			t.Fatalf("greeted %v; want each of %v once", seen, c.pids)
		}
	}
	select {
	case e := <-greeted:
		t.Fatalf("extra delivery %s", e.Args)
	case <-time.After(50 * time.Millisecond):
	}
	if st := c.em.Stats(); st.Routed < 3 {
		t.Fatalf("master routed %d frames; want at least 3", st.Routed)
	}
}

// Once fires once and Off stops delivery, for events from another process.
func TestOnceAndOffAcrossProcesses(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	w := emitter.Pid(c.pids[0])
	var once atomic.Int64
	c.em.Once("tick", func(emitter.Event) { once.Add(1) })
	var on atomic.Int64
	l := c.em.On("tick", func(emitter.Event) { on.Add(1) })
	fn, last := collect(1)
	c.em.On("tock", fn)
	if err := c.em.To(w).Emit("burst", 100, "tick"); err != nil {
		t.Fatal(err)
	}
	if !xtesting.Eventually(10*time.Second, func() bool { return on.Load() == 100 }) {
		t.Fatalf("On saw %d ticks; want 100", on.Load())
	}
	if !xtesting.Eventually(5*time.Second, func() bool { return once.Load() == 1 }) {
		t.Fatalf("Once fired %d times; want 1", once.Load())
	}
	c.em.Off(l)
	c.em.To(w).Emit("burst", 100, "tick")
	c.em.To(w).Emit("burst", 1, "tock") // after the ticks, from the same worker
	recv(t, last)
	time.Sleep(10 * time.Millisecond) // the tick listener, if any, runs on its own goroutine
	if on.Load() != 100 || once.Load() != 1 {
		t.Fatalf("after Off: On %d, Once %d; want 100, 1", on.Load(), once.Load())
	}
}

// Order per pair under a burst of 100,000 events, both directions.
func TestOrderUnderBurst(t *testing.T) {
	const n = 100_000
	c := newTestCluster(t, 1, nil)
	w := emitter.Pid(c.pids[0])
	var next, bad atomic.Int64
	c.em.On("up", func(e emitter.Event) {
		i, _ := emitter.Arg[int64](e, 0)
		if i != next.Load() {
			bad.Add(1)
		}
		next.Store(i + 1)
	})
	if err := c.em.To(w).Emit("burst", n, "up"); err != nil {
		t.Fatal(err)
	}
	for i := range n { // and the other way at the same time
		if err := c.em.To(w).Emit("seq", i); err != nil {
			t.Fatal(err)
		}
	}
	if !xtesting.Eventually(30*time.Second, func() bool { return next.Load() == n }) {
		t.Fatalf("worker→master: %d events arrived; want %d", next.Load(), n)
	}
	if bad.Load() != 0 {
		t.Fatalf("worker→master: %d out of order", bad.Load())
	}
	counts := make(chan emitter.Event, 100)
	c.em.On("seq-count", func(e emitter.Event) { counts <- e })
	ok := xtesting.Eventually(30*time.Second, func() bool {
		c.em.To(w).Emit("seq-count")
		var got, wrong int64
		recv(t, counts).Decode(&got, &wrong)
		if wrong != 0 {
			t.Fatalf("master→worker: %d out of order", wrong)
		}
		return got == n
	})
	if !ok {
		t.Fatalf("master→worker: not all %d events arrived", n)
	}
}

// A dead target pid is dropped and counted, not an error; an unknown one too.
func TestDeadTargetDropped(t *testing.T) {
	c := newTestCluster(t, 2, &emitter.Options{RingSize: 64 << 10, PeerCheck: 10 * time.Millisecond})
	dead := c.pids[0]
	c.cmds[0].Process.Kill()
	c.cmds[0].Wait()
	// The master notices by itself (its reader sees the producer dead).
	if !xtesting.Eventually(10*time.Second, func() bool { return len(c.em.Peers()) == 1 }) {
		t.Fatalf("peers %v after a worker died; want one", c.em.Peers())
	}
	before := c.em.Stats().Dropped
	if err := c.em.To(emitter.Pid(dead)).Emit("ping", 1); err != nil {
		t.Fatalf("emit to a dead pid: %v; want nil", err)
	}
	if err := c.em.To(emitter.Pid(1<<30)).Emit("ping", 1); err != nil {
		t.Fatalf("emit to an unknown pid: %v; want nil", err)
	}
	if got := c.em.Stats().Dropped - before; got != 2 {
		t.Fatalf("dropped %d; want 2", got)
	}
	// A worker's event to the dead pid is dropped by the master.
	before = c.em.Stats().Dropped
	c.em.To(emitter.Pid(c.pids[1])).Emit("relay", []int{dead})
	if !xtesting.Eventually(10*time.Second, func() bool { return c.em.Stats().Dropped > before }) {
		t.Fatal("the master did not count the routed event to a dead pid")
	}
	// The slot is reused by a successor, whose rings start empty.
	fn, pongs := collect(4)
	c.em.On("pong", fn)
	succ := c.Start(t, "worker", 1)
	c.em.RemoveWorker(dead) // already gone: nothing
	ok := xtesting.Eventually(10*time.Second, func() bool {
		c.em.To(emitter.Pid(succ)).Emit("ping", 7)
		select {
		case e := <-pongs:
			return e.From == succ
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	if !ok {
		t.Fatal("no answer from the successor in the reused slot")
	}
}

// A full ring (its reader stopped) makes EmitContext wait until the deadline
// and return an error wrapping ring.ErrFull.
func TestFullRingDeadline(t *testing.T) {
	c := newTestCluster(t, 1, &emitter.Options{RingSize: 16 << 10})
	w := c.pids[0]
	if err := syscall.Kill(w, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(w, syscall.SIGCONT)
	var err error
	for i := 0; i < 10_000 && err == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err = c.em.To(emitter.Pid(w)).EmitContext(ctx, "seq", i)
		cancel()
	}
	if !errors.Is(err, ring.ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want an error wrapping ring.ErrFull and context.DeadlineExceeded", err)
	}
}
