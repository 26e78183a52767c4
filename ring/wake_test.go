package ring_test

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/ring"
)

// TestNoLostWakeUnderLoad commits records of 4 KiB one at a time, each at a
// random moment after the consumer acknowledged the previous one, so that
// commits land all over the consumer's way to sleep (it never spins and
// sleeps up to 2 s). A record that takes longer than stallAfter to be
// acknowledged is a lost wake-up. Before the fix this lost 2 wake-ups in 4M
// commits (60 s); the forced interleaving is TestReorderedCommitIsNeverLost.
// It runs 1 s, or CLUSTER2_SOAK_RING_WAKE (a duration) when set.
func TestNoLostWakeUnderLoad(t *testing.T) {
	if os.Getenv("CLUSTER2_TEST_EMULATED") != "" {
		// qemu-user on an amd64 host does not keep an STLR before a later
		// LDAR (internal/order's doc): the handshake's store-then-load is
		// not sequentially consistent there, as it is on arm64 hardware.
		t.Skip("emulated: qemu-user does not order a store before a later load (see internal/order)")
	}
	dur := time.Second
	if s := os.Getenv("CLUSTER2_SOAK_RING_WAKE"); s != "" {
		var err error
		if dur, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	const (
		size     = 4088 // payload: a 4096-byte record
		capacity = 8192
		maxGap   = 4000 // busy-loop iterations before a commit (0 to a few µs)
		// A lost wake leaves the consumer asleep for PeerCheck; a stall
		// that long is counted, one of a loaded machine's scheduling
		// hiccups (hundreds of ms under -race with other work) is not.
		peerCheck  = 10 * time.Second
		stallAfter = 5 * time.Second
		stopType   = 1<<32 - 1 // the last record: the producer stopped
	)
	a, _, r := arenaRing(t, capacity)
	p, _ := a.Self()
	opts := &ring.Options{Spin: -1, PeerCheck: peerCheck}
	pr, err := r.Producer(context.Background(), p, opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Consumer(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	var ack atomic.Int64
	ack.Store(-1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var stalls []time.Duration
	var sent int64
	wg.Go(func() { // producer
		runtime.LockOSThread()
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i) | 1
		}
		sink := 0
		for k := int64(0); !stop.Load(); k++ {
			start := time.Now()
			stalled := false
			for spins := 0; ack.Load() != k-1 && !stop.Load(); spins++ {
				if spins&1023 == 0 && !stalled && time.Since(start) > stallAfter {
					stalled = true
				}
			}
			if stalled {
				stalls = append(stalls, time.Since(start))
			}
			for j := range rng.IntN(maxGap + 1) {
				sink += j
			}
			buf[0] = byte(sink)
			if err := pr.Write(context.Background(), uint32(k), buf); err != nil {
				t.Error(err)
				return
			}
			sent = k + 1
		}
		// The consumer may be waiting for one more: end its Read.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := pr.Write(ctx, stopType, nil); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() { // consumer
		runtime.LockOSThread()
		ctx, cancel := context.WithTimeout(context.Background(), dur+10*time.Second)
		defer cancel()
		for done := false; !done; {
			_, err := c.Read(ctx, func(typ uint32, _ []byte) {
				if typ == stopType {
					done = true
					return
				}
				ack.Store(int64(typ))
			}, 1)
			if err != nil {
				t.Error(err)
				stop.Store(true)
				return
			}
		}
	})
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	st := c.Stats()
	t.Logf("%d records, %d consumer futex sleeps (%d bounded: unacknowledged), %d rescues, %d stalls > %v: %v",
		sent, st.Sleeps, st.Unacked, st.Rescues, len(stalls), stallAfter, stalls)
	if len(stalls) > 0 {
		t.Errorf("lost wake-up(s)")
	}
}
