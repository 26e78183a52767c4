package cache_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

func watchSpace(t *testing.T) (*cache.Space, *cache.Cache) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 16 << 20, JournalBytes: 4 << 20}) // 40000 sets never lap it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	c, err := sp.Use("w", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return sp, c
}

// TestBlockedWatcherHoldsUpNobody: a watcher whose callback blocks must not
// stall the process's other watchers (they all ran on one goroutine, one
// after the other: the second watcher heard nothing while the first
// blocked). The blocked one falls behind: its losses are counted and, once
// it runs again, it is told with one OpLost between the changes before and
// after them, in order.
func TestBlockedWatcherHoldsUpNobody(t *testing.T) {
	_, c := watchSpace(t)
	bg := context.Background()
	block := make(chan struct{})
	var mu sync.Mutex
	var slow []cache.Change
	first := make(chan struct{})
	var once sync.Once
	ws := c.Watch("", func(ch cache.Change) {
		once.Do(func() { close(first); <-block })
		mu.Lock()
		slow = append(slow, ch)
		mu.Unlock()
	})
	var fastMu sync.Mutex
	fast := 0
	c.Watch("", func(cache.Change) { fastMu.Lock(); fast++; fastMu.Unlock() })
	const n = 40000 // more than a watcher's queue (16384)
	fastCount := func() int { fastMu.Lock(); defer fastMu.Unlock(); return fast }
	for i := range n {
		if _, err := c.Set(bg, fmt.Sprint("k", i), []byte(fmt.Sprint(i)), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		// Keep the healthy watcher within 4096 changes of the writer, so
		// that a starved test process cannot overflow its queue.
		if i%1024 == 1023 && !xtesting.Eventually(5*time.Second, func() bool { return fastCount() > i-4096 }) {
			close(block)
			t.Fatalf("with one watcher blocked, the other heard %d of the first %d changes in 5 s", fastCount(), i+1)
		}
	}
	if !xtesting.Eventually(5*time.Second, func() bool { return fastCount() == n }) {
		close(block)
		t.Fatalf("with one watcher blocked, the other heard %d of %d changes in 5 s", fastCount(), n)
	}
	<-first
	lost := ws.Lost()
	if lost == 0 || c.Stats().WatchLost != lost {
		t.Fatalf("blocked watcher: Lost() = %d, Stats.WatchLost = %d; want equal and > 0", lost, c.Stats().WatchLost)
	}
	close(block)
	// It drains its queue, then hears of its loss.
	if !xtesting.Eventually(5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slow) > 0 && slow[len(slow)-1].Op == cache.OpLost
	}) {
		t.Fatal("the unblocked watcher was never told of its loss")
	}
	if _, err := c.Set(bg, "after", []byte("a"), cache.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if !xtesting.Eventually(5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slow) > 0 && slow[len(slow)-1].Key == "after"
	}) {
		t.Fatal("the unblocked watcher never heard the change after its loss")
	}
	mu.Lock()
	defer mu.Unlock()
	// k0 (the blocking call), then k1..k(m-1) queued, OpLost, "after".
	m := len(slow) - 2
	if m < 1024 {
		t.Fatalf("unblocked watcher heard %d changes; want its queue's worth, one OpLost and the last", len(slow))
	}
	for i, ch := range slow[:m] {
		if ch.Op != cache.OpSet || ch.Key != fmt.Sprint("k", i) {
			t.Fatalf("change %d = %v %q; want set k%d", i, ch.Op, ch.Key, i)
		}
	}
	if l := slow[m]; l.Op != cache.OpLost || l.Lost != lost || l.Lost != uint64(n-m) || l.Deleted() {
		t.Fatalf("after the %d queued changes: %+v; want OpLost of %d", m, l, n-m)
	}
	t.Logf("fast watcher heard all %d; the blocked one lost %d and was told in order", n, lost)
}

// TestCloseDoesNotWaitForBlockedWatcher: a stop (Space.Close, which a
// worker's graceful stop calls) used to wait for a blocked callback forever,
// i.e. the whole StopTimeout; it waits 250 ms at most.
func TestCloseDoesNotWaitForBlockedWatcher(t *testing.T) {
	sp, c := watchSpace(t)
	block := make(chan struct{})
	defer close(block)
	in := make(chan struct{}, 1)
	c.Watch("k", func(cache.Change) {
		select {
		case in <- struct{}{}:
		default:
		}
		<-block
	})
	c.Set(context.Background(), "k", []byte("v"), cache.SetOptions{})
	c.Set(context.Background(), "k", []byte("w"), cache.SetOptions{})
	select {
	case <-in:
	case <-time.After(5 * time.Second):
		t.Fatal("the callback never ran")
	}
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() { sp.Close(); closed <- time.Since(start) }()
	select {
	case d := <-closed:
		if d > 2*time.Second {
			t.Fatalf("Close took %v with a blocked watcher", d)
		}
		t.Logf("Close returned after %v with a callback blocked", d.Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waits for a blocked watch callback after 5 s")
	}
}
