package order_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/order"
)

func TestStoreRelease(t *testing.T) {
	var w atomic.Uint64
	for _, v := range []uint64{1, 0, 1<<64 - 1, 0x0123456789abcdef} {
		order.StoreRelease(&w, v)
		if got := w.Load(); got != v {
			t.Fatalf("after StoreRelease(%#x), Load = %#x", v, got)
		}
	}
	// The fences only have to return.
	order.LoadFence()
	order.StoreFence()
	order.Fence()
}

// storeBuffering runs the store-buffering litmus test for about budget:
// in each round each of two threads stores the round number to its own word
// (with StoreRelease), fences or not, then loads the other's word. Both loads
// missing the other's store means that a store was reordered after the
// following load. It returns the rounds run and how many reordered.
func storeBuffering(budget time.Duration, fence bool) (rounds, reordered int) {
	type padded struct {
		v atomic.Uint64
		_ [120]byte
	}
	const maxRounds = 1 << 20
	var x, y, done0, done1, limit padded
	missed := [2][]bool{make([]bool, maxRounds+1), make([]bool, maxRounds+1)}
	var wg sync.WaitGroup
	side := func(me int, mine, other, myDone, otherDone *atomic.Uint64) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		deadline := time.Now().Add(budget)
		for k := uint64(1); k <= maxRounds; k++ {
			for otherDone.Load() < k-1 { // both finished round k-1
			}
			if l := limit.v.Load(); l != 0 && k > l {
				return
			}
			order.StoreRelease(mine, k)
			if fence {
				order.Fence()
			}
			// A load the processor may satisfy before the store above is
			// visible (x86-TSO's one relaxation), unless fenced.
			missed[me][k] = other.Load() < k
			if me == 0 && (k == maxRounds || k%256 == 0 && time.Now().After(deadline)) {
				limit.v.Store(k) // before done: the other side sees it when it sees done
			}
			myDone.Store(k)
		}
	}
	wg.Go(func() { side(0, &x.v, &y.v, &done0.v, &done1.v) })
	wg.Go(func() { side(1, &y.v, &x.v, &done1.v, &done0.v) })
	wg.Wait()
	rounds = int(limit.v.Load())
	for k := 1; k <= rounds; k++ {
		if missed[0][k] && missed[1][k] {
			reordered++
		}
	}
	return rounds, reordered
}

// TestFenceOrdersStoreBeforeLoad: with Fence between a thread's store and its
// load of the other thread's word, the two threads never both miss each
// other's store (Dekker's handshake holds); without it they may, on amd64,
// which shows that StoreRelease is not a full fence and that the machine
// running the test can reorder (otherwise the fenced run proves nothing, and
// the test says so).
func TestFenceOrdersStoreBeforeLoad(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two threads running at once")
	}
	n1, plain := storeBuffering(300*time.Millisecond, false)
	n2, fenced := storeBuffering(300*time.Millisecond, true)
	t.Logf("store-buffering litmus on %s: %d of %d rounds reordered without Fence, %d of %d with", runtime.GOARCH, plain, n1, fenced, n2)
	if fenced != 0 {
		t.Errorf("%d rounds reordered a store after a later load across Fence; want 0", fenced)
	}
	if plain > 0 && !order.PlainRelease {
		// StoreRelease is sync/atomic's Store here, and the load is
		// sync/atomic's: real hardware keeps them in order (sequential
		// consistency); an emulator may not (package doc, Caveats).
		t.Logf("sync/atomic's Store was reordered after a later atomic Load %d times: this is an emulator that does not honour the Go memory model's sequential consistency", plain)
	}
	if plain == 0 {
		t.Logf("no reordering seen without Fence either: this run could not have caught a broken Fence")
	}
}
