package cache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

const loadEvictKeys = 4

// loadEvictCounters are the arena words the loadevict children count in:
// per key, loader runs now in progress, total runs and overlapping runs
// (a loader that started while another run of the same key was in progress).
type loadEvictCounters struct {
	start, ready        *atomic.Uint64
	active, runs, twice [loadEvictKeys]*atomic.Uint64
}

func loadEvictRegion(a *shm.Arena) loadEvictCounters {
	off, _, err := a.Region(context.Background(), "loadevict", 8*(2+3*loadEvictKeys), nil)
	if err != nil {
		panic(err)
	}
	w := func(i int) *atomic.Uint64 { return shm.Ptr[atomic.Uint64](a, off+shm.Off(8*i)) }
	c := loadEvictCounters{start: w(0), ready: w(1)}
	for k := range loadEvictKeys {
		c.active[k], c.runs[k], c.twice[k] = w(2+3*k), w(3+3*k), w(4+3*k)
	}
	return c
}

// childLoadEvict Gets every key of "le" from one goroutine per key, with a
// loader that takes LOAD_MS and counts its runs, and checks each value.
func childLoadEvict() {
	a, sp := childSpace()
	c, err := sp.Use("le", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	cnt := loadEvictRegion(a)
	ms, _ := strconv.Atoi(os.Getenv("LOAD_MS"))
	cnt.ready.Add(1)
	for cnt.start.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for k := range loadEvictKeys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("key", k)
			v, err := c.Get(ctx, key, func(ctx context.Context, key string) ([]byte, error) {
				if cnt.active[k].Add(1) > 1 {
					cnt.twice[k].Add(1)
				}
				cnt.runs[k].Add(1)
				time.Sleep(time.Duration(ms) * time.Millisecond)
				cnt.active[k].Add(^uint64(0))
				return []byte("value of " + key), nil
			})
			if err != nil {
				fail(3, "get %s: %v", key, err)
			}
			if string(v) != "value of "+key {
				fail(3, "get %s = %q", key, v)
			}
		}()
	}
	wg.Wait()
}

// TestLoaderOnceUnderEviction: while three processes Get the same keys with
// a slow loader, this process churns the (single) shard so hard that the tail
// passes every loading record dozens of times during one load. A loading
// record must never be evicted: a key's loader never runs twice at a time.
// (The tail used to evict loading records like any other: waiters then found
// the key absent and ran the loader again while the first run went on: 3
// runs per key, 2 of them concurrent, on the old code.)
func TestLoaderOnceUnderEviction(t *testing.T) {
	a, err := shm.Create(shm.Options{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 1 << 20, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); a.Close() })
	cnt := loadEvictRegion(a)
	churn, err := sp.Use("churn", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	var cmds []*exec.Cmd
	for range n {
		cmd := xtesting.Command(t, "loadevict", []*os.File{a.File()}, "LOAD_MS=400")
		xtesting.Start(t, cmd)
		cmds = append(cmds, cmd)
	}
	if !xtesting.Eventually(10*time.Second, func() bool { return cnt.ready.Load() == n }) {
		t.Fatal("children never got ready")
	}
	var stop atomic.Bool
	var sets atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		val := make([]byte, 16<<10)
		for i := 0; !stop.Load(); i++ {
			if _, err := churn.Set(context.Background(), fmt.Sprint("c", i), val, cache.SetOptions{}); err != nil {
				t.Error(err)
				return
			}
			sets.Add(1)
		}
	}()
	cnt.start.Store(1)
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("child: %v", err)
		}
	}
	stop.Store(true)
	<-done
	st := churn.Stats()
	t.Logf("%d churn sets of 16 KiB into a 1 MiB space during the loads (%d evictions)", sets.Load(), st.Evictions)
	if st.Evictions < 200 {
		t.Fatalf("only %d evictions: the test put no pressure on the loading records", st.Evictions)
	}
	// A run after the first one ended is legitimate: the churn may evict the
	// loaded value before a slow waiter (-race, a loaded host) looks again,
	// and that waiter's miss loads anew. A run while another is in progress
	// is the defect.
	for k := range loadEvictKeys {
		r, tw := cnt.runs[k].Load(), cnt.twice[k].Load()
		if tw != 0 {
			t.Errorf("key%d: loader ran %d times, %d of them while another run was in progress, across %d processes; want one at a time", k, r, tw, n)
		}
		t.Logf("key%d: %d loader runs, %d concurrent", k, r, tw)
	}
	if err := sp.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTooManyLoads: a shard whose heap is full of loads in progress refuses
// a Set and a new load with ErrTooManyLoads instead of evicting a loading
// record; once the loads end, everything works and each loader ran once.
func TestTooManyLoads(t *testing.T) {
	a, err := shm.Create(shm.Options{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 1 << 20, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c, err := sp.Use("full", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	release := make(chan struct{})
	var runs atomic.Int64
	loader := func(ctx context.Context, key string) ([]byte, error) {
		runs.Add(1)
		<-release
		return []byte("v"), nil
	}
	key := func(i int) string { return fmt.Sprintf("%01000d", i) } // a loading record of 1088 bytes
	type res struct {
		i   int
		err error
	}
	results := make(chan res, 2000)
	started := 0
	var full error
	for i := 0; full == nil && i < 2000; i++ {
		started++
		go func() {
			_, err := c.Get(ctx, key(i), loader)
			results <- res{i, err}
		}()
		// Wait until this Get's loader runs or the Get fails.
		for runs.Load() < int64(i+1) && full == nil {
			select {
			case r := <-results:
				if !errors.Is(r.err, cache.ErrTooManyLoads) {
					t.Fatalf("Get %d with the heap full of loads = %v; want ErrTooManyLoads", r.i, r.err)
				}
				full = r.err
				started--
			default:
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	if full == nil {
		t.Fatal("2000 loads in progress fitted in a 1 MiB space")
	}
	t.Logf("%d loads in progress fill the shard; the next Get is refused", started)
	// A value the small log takes is stored (no load is ever in the small
	// log); one too large for it goes to the main log, full of loads.
	if _, err := c.Set(ctx, "small", make([]byte, 1024), cache.SetOptions{}); err != nil {
		t.Fatalf("small Set with the main log full of loads = %v; want it stored", err)
	}
	big := make([]byte, sp.MaxValueLen())
	if _, err := c.Set(ctx, "x", big, cache.SetOptions{}); !errors.Is(err, cache.ErrTooManyLoads) {
		t.Fatalf("Set with the heap full of loads = %v; want ErrTooManyLoads", err)
	}
	close(release)
	for range started {
		if r := <-results; r.err != nil {
			t.Errorf("Get %d: %v", r.i, r.err)
		}
	}
	if got := runs.Load(); got != int64(started) {
		t.Errorf("%d loader runs for %d loads", got, started)
	}
	if _, err := c.Set(ctx, "x", big, cache.SetOptions{}); err != nil {
		t.Fatalf("Set after the loads ended: %v", err)
	}
	if err := sp.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
