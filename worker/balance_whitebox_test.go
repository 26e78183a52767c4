package worker

import (
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm"
)

// balanceFixture is a process table of n slots (master, workers 1..n-2, the
// auxiliary slot) whose workers listen, and a balancer of slot 1 over it
// that counts its steps instead of sleeping, on a clock that stands still
// unless the test moves it.
type balanceFixture struct {
	blocks []proc.Block
	slots  []shm.SlotInfo
	queue  int
	steps  int
	onStep func()
	clock  time.Time
	b      *balancer
}

func newBalanceFixture(n int) *balanceFixture {
	f := &balanceFixture{blocks: make([]proc.Block, n), clock: time.Unix(1e9, 0)}
	for s := 1; s < n-1; s++ {
		f.blocks[s].SetPid(1000 + s)
		f.blocks[s].SetState(proc.StateListening)
		f.slots = append(f.slots, shm.SlotInfo{Slot: s, Pid: 1000 + s})
	}
	f.b = &balancer{self: 1, blocks: f.blocks, live: func() []shm.SlotInfo { return f.slots },
		queued: func() int { return f.queue }, now: func() time.Time { return f.clock },
		sleep: func(time.Duration) {
			f.steps++
			if f.onStep != nil {
				f.onStep()
			}
		}}
	return f
}

func (f *balanceFixture) accept(slot, n int) {
	for range n {
		f.blocks[slot].CountAccept()
	}
}

func TestBalanceHoldsBackOnlyTheWorkerAhead(t *testing.T) {
	f := newBalanceFixture(5) // workers in slots 1, 2, 3
	f.b.wait()
	if f.steps != 0 {
		t.Fatalf("no accepts yet: %d steps of waiting; want 0", f.steps)
	}
	f.accept(1, 3)
	f.accept(2, 3)
	f.accept(3, 3)
	if ahead, _ := f.b.ahead(); ahead {
		t.Fatalf("equal shares: ahead")
	}
	f.accept(1, balanceSlack) // within the slack
	if ahead, _ := f.b.ahead(); ahead {
		t.Fatalf("%d accepts above the others: ahead; the slack is %d", balanceSlack, balanceSlack)
	}
	f.accept(1, 10)
	f.b.wait()
	if want := int(balanceMaxWait / balanceStep); f.steps != want {
		t.Fatalf("ahead, the others idle, no queue: %d steps; want the bound, %d", f.steps, want)
	}

	// Connections wait and the others take none: no longer than a step.
	f.steps, f.queue = 0, 3
	f.b.wait()
	if f.steps != 1 {
		t.Fatalf("ahead, the others busy, clients queued: %d steps; want 1", f.steps)
	}

	// The others take connections: it waits until it is no longer ahead.
	f.steps, f.queue = 0, 0
	f.onStep = func() { f.accept(2, 4); f.accept(3, 4) }
	f.b.wait()
	if f.steps == 0 || f.steps >= int(balanceMaxWait/balanceStep) {
		t.Fatalf("the others catching up: %d steps; want some, fewer than the bound", f.steps)
	}
	if ahead, _ := f.b.ahead(); ahead {
		t.Fatalf("wait returned while still ahead, before its bound")
	}
}

func TestBalanceCountsOnlyListeningLiveWorkers(t *testing.T) {
	f := newBalanceFixture(5)
	f.accept(1, 20)
	// Slot 2 paused and slot 3 dead (its block still says listening: the
	// master resets a block only for the next process): no peer left.
	f.blocks[2].SetState(proc.StatePaused)
	f.slots = f.slots[:2]                // slots 1 and 2 live
	f.clock = f.clock.Add(balanceSample) // the next sample sees them
	f.b.wait()
	if f.steps != 0 {
		t.Fatalf("alone among listening live workers: %d steps; want 0", f.steps)
	}
	// One worker alone never waits, however many it accepted.
	g := newBalanceFixture(3)
	g.accept(1, 100)
	g.b.wait()
	if g.steps != 0 {
		t.Fatalf("a single worker: %d steps; want 0", g.steps)
	}
}

// The window slides: accepts older than it no longer count, and after a
// pause longer than the window it starts again from nothing.
func TestBalanceWindowSlides(t *testing.T) {
	f := newBalanceFixture(4) // workers in slots 1, 2
	f.b.ahead()               // the first sample: every baseline 0
	f.accept(1, 20)
	if ahead, _ := f.b.ahead(); !ahead {
		t.Fatalf("20 accepts against 0 in the window: not ahead")
	}
	for range balanceWindows - 1 {
		f.clock = f.clock.Add(balanceSample)
		f.b.ahead()
		f.accept(2, 1)
	}
	if ahead, _ := f.b.ahead(); !ahead {
		t.Fatalf("20 accepts against 4 within the window: not ahead")
	}
	f.clock = f.clock.Add(balanceSample) // the baseline before the 20 leaves the window
	if ahead, _ := f.b.ahead(); ahead {
		t.Fatalf("the 20 accepts left the window: still ahead")
	}
	f.accept(1, 30)
	f.clock = f.clock.Add(10 * balanceSample * balanceWindows)
	if ahead, _ := f.b.ahead(); ahead {
		t.Fatalf("after a pause longer than the window: ahead")
	}
}
