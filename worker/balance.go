package worker

import (
	"sync"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm"
)

// Accept balance: the workers share one listening socket, and whichever is
// awake when a connection arrives takes it (Go's netpoller wakes every
// worker's epoll; the one whose thread is already running calls accept
// first), so a busy worker takes more than its share under light load.
// Before each accept a worker compares the connections it accepted in the
// last balanceSample × balanceWindows (100 ms) with the mean of the
// listening workers' (every worker's accepts are live in its control
// block); while it took more than balanceRatio × the mean + balanceSlack, it
// stands back in steps of balanceStep for up to balanceMaxWait so that one
// of the others takes the next connection. It stops waiting as soon as it is
// no longer ahead, and when the others took nothing during a step while
// connections wait in the socket's queue (they are busy: waiting longer
// would only delay the client). docs/runtime.md ("Balanced accepts") has the
// figures behind the constants.
const (
	balanceSample  = 20 * time.Millisecond // how often the window's baselines are taken
	balanceWindows = 5                     // baselines kept: the window is balanceSample × balanceWindows
	balanceSlack   = 2                     // accepts above the mean that are never held back
	balanceRatio   = 1.10                  // and the share above the mean
	balanceStep    = 200 * time.Microsecond
	balanceMaxWait = 2 * time.Millisecond
)

// balancer holds a worker back from accepting while it took more than its
// share of the recent connections.
type balancer struct {
	self   int // this worker's slot
	blocks []proc.Block
	live   func() []shm.SlotInfo // the arena's process table (shm.Arena.Slots)
	queued func() int            // connections waiting in the shared socket's queue (0 when unknown)
	sleep  func(time.Duration)   // preciseSleep (tests count the steps)
	now    func() time.Time      // time.Now (tests stop the clock)

	mu sync.Mutex
	// peers are the listening workers (this one included), as of the last
	// sample; ring holds the baselines (accepts by slot) of the last
	// balanceWindows samples, next the oldest's index.
	peers []peer
	ring  [balanceWindows]map[int]baseline
	next  int
	last  time.Time // of the last sample
}

type peer struct{ slot, pid int }

type baseline struct {
	pid     int
	accepts uint64
}

func newBalancer(self int, blocks []proc.Block, a *shm.Arena, queued func() int) *balancer {
	return &balancer{self: self, blocks: blocks, live: a.Slots, queued: queued, sleep: preciseSleep, now: time.Now}
}

// sampleLocked takes the samples due at now, on the accept path (no
// goroutine: an idle worker does nothing): the listening workers (a live
// member of the arena's process table in a worker slot whose block says
// listening, with the pid the block says) and their accepts, as the newest
// baseline, once per balanceSample elapsed (all of the ring after a pause
// longer than the window: the window restarts).
func (b *balancer) sampleLocked(now time.Time) {
	due := int(now.Sub(b.last) / balanceSample)
	if b.last.IsZero() || due > balanceWindows {
		due = balanceWindows
	}
	if due == 0 {
		return
	}
	b.last = now
	n := len(b.blocks)
	var peers []peer
	base := map[int]baseline{}
	for _, s := range b.live() {
		if proc.SlotRole(s.Slot, n) != proc.RoleWorker || s.Slot >= n {
			continue
		}
		blk := &b.blocks[s.Slot]
		if blk.State() != proc.StateListening || blk.Pid() != s.Pid {
			continue
		}
		peers = append(peers, peer{s.Slot, s.Pid})
		base[s.Slot] = baseline{s.Pid, blk.Accepts()}
	}
	b.peers = peers
	for range due {
		b.ring[b.next] = base
		b.next = (b.next + 1) % balanceWindows
	}
}

// ahead reports whether this worker accepted more than its share in the
// window, and the others' accepts since they started (to see whether they
// progress).
func (b *balancer) ahead() (bool, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sampleLocked(b.now())
	if len(b.peers) < 2 {
		return false, 0
	}
	oldest := b.ring[b.next] // the baseline balanceWindows samples ago (or fresher)
	var mine, sum, others uint64
	in := false
	for _, p := range b.peers {
		blk := &b.blocks[p.slot]
		if blk.Pid() != p.pid {
			continue // replaced since the sample
		}
		acc := blk.Accepts()
		if p.slot != b.self {
			others += acc
		}
		if bl, ok := oldest[p.slot]; ok && bl.pid == p.pid && bl.accepts <= acc {
			acc -= bl.accepts
		}
		sum += acc
		if p.slot == b.self {
			mine, in = acc, true
		}
	}
	if !in {
		return false, others
	}
	mean := float64(sum) / float64(len(b.peers))
	return float64(mine) > mean*balanceRatio+balanceSlack, others
}

// wait holds the worker back while it is ahead (see the constants), for at
// most balanceMaxWait: by the clock, and by the steps' nominal length.
func (b *balancer) wait() {
	ahead, others := b.ahead()
	if !ahead {
		return
	}
	start := b.now()
	for waited := time.Duration(0); ahead && waited < balanceMaxWait && b.now().Sub(start) < balanceMaxWait; waited += balanceStep {
		b.sleep(balanceStep)
		var now uint64
		ahead, now = b.ahead()
		if now == others && b.queued() > 0 {
			return // the others are busy and clients wait
		}
		others = now
	}
}
