package proc_test

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm/shmtest"
)

func TestNoPointers(t *testing.T) {
	shmtest.AssertNoPointers(t, proc.Block{})
}

func TestRegionIsSharedAndSized(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	b1, err := proc.Region(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := proc.Region(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if len(b1) != a.SlotCount() || &b1[3] != &b2[3] {
		t.Fatalf("got %d blocks; want %d, the same on every call", len(b1), a.SlotCount())
	}
}

// TestHeartbeatSeqlock has one writer publish heartbeats whose words are all
// equal while readers check that no copy mixes two heartbeats.
func TestHeartbeatSeqlock(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, _ := proc.Region(context.Background(), a)
	b := &bs[1]
	b.Reset(0)
	var w [proc.HeartbeatWords]uint64
	if _, ok := b.LoadHeartbeat(&w); ok {
		t.Fatalf("LoadHeartbeat on a reset block: ok; want none")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var v [proc.HeartbeatWords]uint64
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for j := range v {
				v[j] = i
			}
			b.StoreHeartbeat(&v)
		}
	}()
	deadline := time.Now().Add(200 * time.Millisecond)
	loads := 0
	for time.Now().Before(deadline) {
		var r [proc.HeartbeatWords]uint64
		if _, ok := b.LoadHeartbeat(&r); !ok {
			continue
		}
		loads++
		for j := range r {
			if r[j] != r[0] {
				t.Fatalf("torn heartbeat: %v", r)
			}
		}
	}
	close(stop)
	wg.Wait()
	if loads == 0 {
		t.Fatalf("no heartbeat loaded")
	}
}

func TestWantAndStateWake(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, _ := proc.Region(context.Background(), a)
	b := &bs[2]
	b.Reset(time.Second)
	got := make(chan proc.Want, 1)
	go func() { got <- b.WaitWant(proc.WantRun, nil, -1) }()
	b.SetWant(proc.WantPause)
	if w := <-got; w != proc.WantPause {
		t.Fatalf("WaitWant = %v; want pause", w)
	}
	b.SetWant(proc.WantDrain)
	b.SetWant(proc.WantRun)
	if b.Want() != proc.WantDrain {
		t.Fatalf("want after drain then run = %v; want drain (final)", b.Want())
	}
	done := make(chan struct{})
	go func() { b.WaitMaster(proc.StateForked, 0, nil, -1); close(done) }()
	b.SetState(proc.StateListening)
	<-done
	if b.State() != proc.StateListening || b.State().String() != "listening" {
		t.Fatalf("state %v; want listening", b.State())
	}
}

func TestChildEnv(t *testing.T) {
	env := proc.ChildEnv([]string{"A=1", proc.EnvSlot + "=9", proc.EnvMaster + "=1", proc.EnvRole + "=worker", "B=2"},
		proc.RoleCacheManager, 3, 42)
	want := []string{"A=1", "B=2", proc.EnvRole + "=cache-manager", proc.EnvSlot + "=3", proc.EnvMaster + "=42"}
	if !slices.Equal(env, want) {
		t.Fatalf("ChildEnv = %v; want %v", env, want)
	}
}

// TestWakeWorkerIsNeverLost races WakeWorker against the sleeper's
// announcement many times: the ready condition, re-checked after the
// announcement, makes sure no wake-up waits for the timeout.
func TestWakeWorkerIsNeverLost(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, _ := proc.Region(context.Background(), a)
	b := &bs[3]
	b.Reset(0)
	for range 2000 {
		var flag atomic.Bool
		done := make(chan struct{})
		go func() {
			for !flag.Load() {
				b.WaitWant(proc.WantRun, flag.Load, 10*time.Second)
			}
			close(done)
		}()
		flag.Store(true)
		b.WakeWorker()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("a wake-up was lost")
		}
	}
}

// TestReasonRoundTrip: a worker's start-failure reason is read back as
// written (cut at ReasonMax), and a reset forgets it.
func TestReasonRoundTrip(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, _ := proc.Region(context.Background(), a)
	b := &bs[2]
	b.Reset(0)
	if r := b.Reason(); r != "" {
		t.Fatalf("Reason of a reset block = %q; want none", r)
	}
	b.SetReason("warm-up: dial tcp: connection refused")
	if r := b.Reason(); r != "warm-up: dial tcp: connection refused" {
		t.Fatalf("Reason = %q", r)
	}
	long := strings.Repeat("0123456789", 20)
	b.SetReason(long)
	if r := b.Reason(); r != long[:proc.ReasonMax] {
		t.Fatalf("Reason of a long text = %q; want its first %d bytes", r, proc.ReasonMax)
	}
	b.Reset(0)
	if r := b.Reason(); r != "" {
		t.Fatalf("Reason after Reset = %q; want none", r)
	}
}

// TestDrainIsFinalUnderRace races a Pause (another thread) against a Drain
// many times, staggered, for a bounded time: a drain must never be
// overwritten (check-then-store lost about 1 in 50,000 rounds; the
// deterministic interleaving is TestDrainWinsRaceWithPause).
func TestDrainIsFinalUnderRace(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, _ := proc.Region(context.Background(), a)
	b := &bs[1]
	const budget = time.Second
	var round, done atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		runtime.LockOSThread()
		for r := int64(1); ; r++ {
			for round.Load() < r {
				if stop.Load() {
					return
				}
			}
			b.SetWant(proc.WantPause)
			done.Store(r)
		}
	})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sink, lost, rounds := 0, 0, int64(0)
	for start := time.Now(); time.Since(start) < budget; {
		rounds++
		b.Reset(0)
		round.Store(rounds)
		for k := range int(rounds % 64) { // stagger the drain against the pause
			sink += k
		}
		b.SetWant(proc.WantDrain)
		for done.Load() < rounds {
		}
		if b.Want() != proc.WantDrain {
			lost++
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d rounds (sink %d)", rounds, sink)
	if lost > 0 {
		t.Errorf("%d of %d rounds ended with want pause although a drain was asked", lost, rounds)
	}
}

// TestBuildRoundTrip: a worker's build is read back as written, each field
// bounded (the version cut first), and a reset forgets it.
func TestBuildRoundTrip(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, _ := proc.Region(context.Background(), a)
	b := &bs[2]
	b.Reset(0)
	if v, r, g := b.Build(); v != "" || r != "" || g != "" {
		t.Fatalf("Build of a reset block = %q %q %q; want none", v, r, g)
	}
	b.SetBuild("v1.2.3", "0123456789abcdef0123", "go1.26.0")
	if v, r, g := b.Build(); v != "v1.2.3" || r != "0123456789ab" || g != "go1.26.0" {
		t.Fatalf("Build = %q %q %q", v, r, g)
	}
	long := strings.Repeat("v", 200)
	b.SetBuild(long, "abc", "go1.26.0 X:nocoverageredesign")
	v, r, g := b.Build()
	if r != "abc" || g != "go1.26.0 X:nocoverageredesign" || len(v)+len(r)+len(g)+2 != proc.BuildMax || v != long[:len(v)] {
		t.Fatalf("Build of a long version = %q %q %q; want it cut to what %d bytes leave", v, r, g, proc.BuildMax)
	}
	b.Reset(0)
	if v, _, _ := b.Build(); v != "" {
		t.Fatalf("Build after Reset = %q; want none", v)
	}
}
