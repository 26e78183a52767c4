package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

var bg = context.Background()

func mustSet(t testing.TB, c *cache.Cache, k, v string) {
	t.Helper()
	if ok, err := c.Set(bg, k, []byte(v), cache.SetOptions{}); err != nil || !ok {
		t.Fatalf("Set(%q) = %v, %v", k, ok, err)
	}
}

func TestSetGetDel(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	if _, err := c.Get(bg, "k", nil); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get of a missing key without loader = %v; want ErrNotFound", err)
	}
	mustSet(t, c, "k", "v1")
	if v, err := c.Get(bg, "k", nil); err != nil || string(v) != "v1" {
		t.Fatalf("Get = %q, %v; want v1", v, err)
	}
	mustSet(t, c, "k", "v2")
	if v, _ := c.Get(bg, "k", nil); string(v) != "v2" {
		t.Fatalf("Get after overwrite = %q; want v2", v)
	}
	mustSet(t, c, "empty", "")
	if v, err := c.Get(bg, "empty", nil); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get of an empty value = %v, %v; want an empty, non-nil value", v, err)
	}
	old, ok, err := c.Del(bg, "k")
	if err != nil || !ok || string(old) != "v2" {
		t.Fatalf("Del = %q, %v, %v; want v2", old, ok, err)
	}
	if _, ok, _ := c.Del(bg, "k"); ok {
		t.Fatal("second Del found a value")
	}
	if _, ok, _ := c.GetInto(nil, "k"); ok {
		t.Fatal("GetInto after Del found a value")
	}
}

func TestBadInput(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	c, _ := sp.Use("t", cache.Options{})
	mustSet(t, c, "keep", "me")
	cases := []struct {
		name string
		err  error
		do   func() error
	}{
		{"empty key", cache.ErrEmptyKey, func() error { _, err := c.Set(bg, "", nil, cache.SetOptions{}); return err }},
		{"long key", cache.ErrKeyTooLarge, func() error {
			_, err := c.Set(bg, strings.Repeat("k", cache.MaxKeyLen+1), nil, cache.SetOptions{})
			return err
		}},
		{"long value", cache.ErrValueTooLarge, func() error {
			_, err := c.Set(bg, "keep", make([]byte, sp.MaxValueLen()+1), cache.SetOptions{})
			return err
		}},
		{"bad name", cache.ErrBadName, func() error { _, err := sp.Use("", cache.Options{}); return err }},
		{"negative expire", cache.ErrInvalidConfig, func() error { _, err := sp.Use("x", cache.Options{Expire: -1}); return err }},
	}
	for _, tc := range cases {
		if err := tc.do(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.err)
		}
	}
	if v, _ := c.Get(bg, "keep", nil); string(v) != "me" {
		t.Fatalf("bad input lost a value: %q", v)
	}
	if _, err := c.Set(bg, "max", make([]byte, sp.MaxValueLen()), cache.SetOptions{}); err != nil {
		t.Fatalf("Set of a MaxValueLen value: %v", err)
	}
	c.Close()
	if _, err := c.Get(bg, "keep", nil); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get on a closed cache = %v; want ErrClosed", err)
	}
}

func TestUseFixesOptions(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	if _, err := sp.Use("c", cache.Options{Expire: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Use("c", cache.Options{Expire: time.Minute}); err != nil {
		t.Fatalf("same options: %v", err)
	}
	_, err := sp.Use("c", cache.Options{Expire: time.Hour})
	if !errors.Is(err, cache.ErrOptionsConflict) || !strings.Contains(err.Error(), "Expire") {
		t.Fatalf("Use with another Expire = %v; want ErrOptionsConflict naming Expire", err)
	}
	_, err = sp.Use("c", cache.Options{Expire: time.Minute, Persist: true})
	if !errors.Is(err, cache.ErrOptionsConflict) || !strings.Contains(err.Error(), "Persist") {
		t.Fatalf("Use with another Persist = %v; want ErrOptionsConflict naming Persist", err)
	}
	for i := range cache.MaxCaches - 1 {
		if _, err := sp.Use(fmt.Sprint("n", i), cache.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sp.Use("one-too-many", cache.Options{}); !errors.Is(err, cache.ErrTooManyCaches) {
		t.Fatalf("Use past MaxCaches = %v; want ErrTooManyCaches", err)
	}
}

func TestCachesAreSeparate(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	a, _ := sp.Use("a", cache.Options{})
	b, _ := sp.Use("b", cache.Options{})
	mustSet(t, a, "k", "in a")
	if _, ok, _ := b.GetInto(nil, "k"); ok {
		t.Fatal("cache b sees cache a's key")
	}
	mustSet(t, b, "k", "in b")
	if v, _ := a.Get(bg, "k", nil); string(v) != "in a" {
		t.Fatalf("a's value = %q after b's Set", v)
	}
}

func TestLeaveIfNotNull(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	var changes atomic.Int32
	c.Watch("k", func(cache.Change) { changes.Add(1) })
	if ok, _ := c.Set(bg, "k", []byte("first"), cache.SetOptions{LeaveIfNotNull: true}); !ok {
		t.Fatal("LeaveIfNotNull on an absent key was refused")
	}
	if ok, _ := c.Set(bg, "k", []byte("second"), cache.SetOptions{LeaveIfNotNull: true}); ok {
		t.Fatal("LeaveIfNotNull on a present key stored")
	}
	if v, _ := c.Get(bg, "k", nil); string(v) != "first" {
		t.Fatalf("value = %q; want first", v)
	}
	time.Sleep(50 * time.Millisecond)
	if n := changes.Load(); n != 1 {
		t.Fatalf("watch fired %d times; want 1 (a refused set fires nothing)", n)
	}
}

func TestExpiry(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	c, _ := sp.Use("t", cache.Options{Expire: 30 * time.Millisecond})
	got := make(chan cache.Change, 10)
	c.Watch("", func(ch cache.Change) { got <- ch })
	mustSet(t, c, "short", "v")
	mustSet(t, c, "lazy", "v")
	if ok, _ := c.Set(bg, "forever", []byte("v"), cache.SetOptions{Expire: -1}); !ok {
		t.Fatal("set forever")
	}
	e, err := c.Inspect("short")
	if err != nil || e.TTL <= 0 || e.TTL > 30*time.Millisecond {
		t.Fatalf("Inspect = %+v, %v; want a TTL in (0, 30ms]", e, err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, ok, _ := c.GetInto(nil, "short"); ok {
		t.Fatal("an expired entry was returned")
	}
	if _, err := c.Get(bg, "lazy", nil); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get of an expired entry = %v; want ErrNotFound", err)
	}
	if n := sp.Sweep(); n < 1 {
		t.Fatalf("Sweep freed %d; want at least 1", n)
	}
	if e, err := c.Inspect("forever"); err != nil || e.TTL != 0 {
		t.Fatalf("Inspect(forever) = %+v, %v", e, err)
	}
	expired := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for len(expired) < 2 {
		select {
		case ch := <-got:
			if ch.Op == cache.OpExpire {
				if !ch.Deleted() || ch.Value != nil {
					t.Fatalf("expiry change %+v carries a value", ch)
				}
				expired[ch.Key] = true
			}
		case <-deadline:
			t.Fatalf("watchers told of %v expiries; want short and lazy", expired)
		}
	}
	st := c.Stats()
	if st.Expirations < 2 || st.Entries != 1 {
		t.Fatalf("Stats = %+v; want 2 expirations, 1 entry", st)
	}
}

func TestEvictionWhenFull(t *testing.T) {
	sp := cachetest.NewSpace(t, 2<<20)
	c, _ := sp.Use("t", cache.Options{})
	val := bytes.Repeat([]byte("x"), 1000)
	const n = 20000 // ~20 MB into a 2 MiB space
	for i := range n {
		if ok, err := c.Set(bg, fmt.Sprint("key-", i), val, cache.SetOptions{}); err != nil || !ok {
			t.Fatalf("Set %d on a full cache = %v, %v", i, ok, err)
		}
	}
	st := c.Stats()
	if st.Evictions == 0 || st.Entries == 0 || st.Entries >= n {
		t.Fatalf("Stats = %+v; want evictions and some entries", st)
	}
	// The newest entries survive.
	for i := n - 10; i < n; i++ {
		if _, ok, _ := c.GetInto(nil, fmt.Sprint("key-", i)); !ok {
			t.Fatalf("recent key-%d was evicted", i)
		}
	}
	// Mixed sizes never fail for fragmentation.
	for i := range 5000 {
		size := (i * 7919) % (sp.MaxValueLen() / 4)
		if _, err := c.Set(bg, fmt.Sprint("mixed-", i), make([]byte, size), cache.SetOptions{}); err != nil {
			t.Fatalf("Set of %d bytes: %v", size, err)
		}
	}
	if err := sp.Verify(bg); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", c.Stats())
}

func TestWatchInOrder(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	w := c.Watch("k", func(ch cache.Change) {
		mu.Lock()
		got = append(got, ch.Op.String()+":"+string(ch.Value))
		if len(got) == 5 {
			close(done)
		}
		mu.Unlock()
	})
	all := 0
	var allMu sync.Mutex
	c.Watch("", func(cache.Change) { allMu.Lock(); all++; allMu.Unlock() })
	mustSet(t, c, "k", "1")
	mustSet(t, c, "other", "x")
	mustSet(t, c, "k", "2")
	c.Del(bg, "k")
	mustSet(t, c, "k", "3")
	mustSet(t, c, "k", "4")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("watcher got %v", got)
	}
	want := []string{"set:1", "set:2", "del:", "set:3", "set:4"}
	mu.Lock()
	if !slices.Equal(got, want) {
		t.Fatalf("watcher got %v; want %v", got, want)
	}
	mu.Unlock()
	c.Unwatch(w)
	mustSet(t, c, "k", "5")
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 5 {
		t.Fatalf("watcher called after Unwatch: %v", got)
	}
	// The every-key watcher runs on its own goroutine: it may lag.
	count := func() int { allMu.Lock(); defer allMu.Unlock(); return all }
	xtesting.Eventually(5*time.Second, func() bool { return count() >= 7 })
	if n := count(); n != 7 {
		t.Fatalf("the every-key watcher saw %d changes; want 7", n)
	}
}

func TestKeysInspectStats(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{Persist: true})
	for i := range 100 {
		mustSet(t, c, fmt.Sprint("k", i), "v")
	}
	c.Del(bg, "k7")
	keys, err := c.Keys(bg)
	if err != nil || len(keys) != 99 || slices.Contains(keys, "k7") {
		t.Fatalf("Keys = %d keys, %v", len(keys), err)
	}
	e, err := c.Inspect("k1")
	if err != nil || string(e.Value) != "v" || !e.Persist || e.TTL != 0 {
		t.Fatalf("Inspect = %+v, %v", e, err)
	}
	if _, err := c.Inspect("k7"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Inspect of a deleted key = %v", err)
	}
	c.GetInto(nil, "k1")
	c.GetInto(nil, "nope")
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 1 || st.Entries != 99 || st.Bytes <= 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestGetIntoAllocatesNothing(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	mustSet(t, c, "key-0000000000001", string(make([]byte, 64)))
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _, _ = c.GetInto(buf[:0], "key-0000000000001")
	})
	if allocs != 0 {
		t.Fatalf("GetInto hit allocates %v times", allocs)
	}
}

// TestGetHitAllocatesOnlyItsValue: a hit by Get with a loader costs what
// GetInto's does plus the one allocation of the copy it returns (issue 16,
// BenchmarkCacheGetOrLoadContended): no load marker, no other allocation,
// with or without the loader options, and the loader never runs.
func TestGetHitAllocatesOnlyItsValue(t *testing.T) {
	for _, opts := range []cache.Options{{}, {Expire: time.Hour, StaleFor: time.Minute, FailSafeFor: time.Hour, RefreshAhead: 0.1, NotFoundExpire: time.Second}} {
		c := cachetest.New(t, "t", opts)
		mustSet(t, c, "key-0000000000001", string(make([]byte, 64)))
		loader := func(context.Context, string) ([]byte, error) {
			t.Error("a hit ran its loader")
			return nil, nil
		}
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			if v, err := c.Get(ctx, "key-0000000000001", loader); err != nil || len(v) != 64 {
				t.Fatalf("Get = %d bytes, %v", len(v), err)
			}
		})
		if allocs != 1 {
			t.Fatalf("options %+v: a Get hit allocates %v times, want 1 (its value)", opts, allocs)
		}
		if st := c.Stats(); st.Loads != 0 {
			t.Fatalf("options %+v: %d loads for hits", opts, st.Loads)
		}
	}
}

func TestLoaderOnceInProcess(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	var runs atomic.Int32
	release := make(chan struct{})
	loader := func(ctx context.Context, key string) ([]byte, error) {
		runs.Add(1)
		<-release
		return []byte("loaded " + key), nil
	}
	var wg sync.WaitGroup
	results := make(chan string, 16)
	for range 16 {
		wg.Go(func() {
			v, err := c.Get(bg, "k", loader)
			if err != nil {
				t.Error(err)
			}
			results <- string(v)
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != "loaded k" {
			t.Fatalf("a caller got %q", v)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("loader ran %d times; want 1", n)
	}
	if st := c.Stats(); st.Loads != 1 {
		t.Fatalf("Stats.Loads = %d", st.Loads)
	}
}

func TestLoaderErrorReachesWaiters(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	release := make(chan struct{})
	boom := errors.New("backend down")
	var runs atomic.Int32
	loader := func(ctx context.Context, key string) ([]byte, error) {
		runs.Add(1)
		<-release
		return nil, boom
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { _, err := c.Get(bg, "k", loader); errs <- err })
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, boom) && !(errors.Is(err, cache.ErrLoaderFailed) && strings.Contains(err.Error(), "backend down")) {
			t.Fatalf("a caller got %v; want the loader's error", err)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("loader ran %d times", runs.Load())
	}
	// The failure is not cached as a value: the next Get loads again.
	v, err := c.Get(bg, "k", func(context.Context, string) ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(v) != "ok" {
		t.Fatalf("Get after a failed load = %q, %v", v, err)
	}
}

func TestGetWaitIsBoundedByContext(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	release := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	wg.Go(func() { c.Get(bg, "k", func(context.Context, string) ([]byte, error) { <-release; return nil, nil }) })
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "k", func(context.Context, string) ([]byte, error) { return []byte("second"), nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get waiting past its deadline = %v; want DeadlineExceeded", err)
	}
}
