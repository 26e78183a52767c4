package cache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// counting returns a loader that counts its runs in n, waits d (or until
// its context ends) and returns v, err; and a function that releases it
// early.
func counting(n *atomic.Int64, d time.Duration, v string, err error) Loader {
	return func(ctx context.Context, _ string) ([]byte, error) {
		n.Add(1)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err != nil {
			return nil, err
		}
		return []byte(v), nil
	}
}

// Loader is cache.Loader, shorter.
type Loader = cache.Loader

// setExpired stores v under k with a deadline already passed (1 ms, then a
// wait past it).
func setExpired(t *testing.T, c *cache.Cache, k, v string) {
	t.Helper()
	if ok, err := c.Set(bg, k, []byte(v), cache.SetOptions{Expire: time.Millisecond}); err != nil || !ok {
		t.Fatalf("Set = %v, %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, ok, _ := c.GetInto(nil, k); ok {
		t.Fatal("set-up: the value did not expire")
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	c := cachetest.New(t, "swr", cache.Options{Expire: time.Minute, StaleFor: time.Minute})
	setExpired(t, c, "k", "old")
	var runs atomic.Int64
	release := make(chan struct{})
	loader := func(ctx context.Context, _ string) ([]byte, error) {
		runs.Add(1)
		<-release
		return []byte("new"), nil
	}
	// Twenty Gets while the refresh is held: each returns the stale value
	// at once (the loader has not returned), one refresh runs.
	for range 20 {
		if v, err := c.Get(bg, "k", loader); err != nil || string(v) != "old" {
			t.Fatalf("Get in the stale window = %q, %v; want the stale value", v, err)
		}
	}
	if !xtesting.Eventually(5*time.Second, func() bool { return runs.Load() == 1 }) {
		t.Fatal("no background refresh started")
	}
	close(release)
	if !xtesting.Eventually(5*time.Second, func() bool { v, ok, _ := c.GetInto(nil, "k"); return ok && string(v) == "new" }) {
		t.Fatal("the refresh never stored its value")
	}
	if v, err := c.Get(bg, "k", loader); err != nil || string(v) != "new" {
		t.Fatalf("Get after the refresh = %q, %v", v, err)
	}
	st := c.Stats()
	if runs.Load() != 1 || st.StaleServes != 20 || st.Refreshes != 1 {
		t.Fatalf("runs %d, %+v; want 1 run, 20 stale serves, 1 refresh", runs.Load(), st)
	}
	if e, _ := c.Inspect("k"); e.TTL < 50*time.Second {
		t.Fatalf("the refreshed entry lives %v; want the cache's Expire", e.TTL)
	}
}

// TestRefreshKeepsTags: a value refreshed in the background (stale window,
// refresh ahead) keeps the tags of the item it replaces, so InvalidateTag
// still removes it; the loader knows nothing of tags.
func TestRefreshKeepsTags(t *testing.T) {
	c := cachetest.New(t, "swr-tags", cache.Options{Expire: time.Minute, StaleFor: time.Minute})
	if ok, err := c.Set(bg, "k", []byte("old"), cache.SetOptions{Expire: time.Millisecond, Tags: []string{"user:1"}}); err != nil || !ok {
		t.Fatalf("Set = %v, %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond)
	if v, err := c.Get(bg, "k", func(context.Context, string) ([]byte, error) { return []byte("new"), nil }); err != nil || string(v) != "old" {
		t.Fatalf("Get in the stale window = %q, %v", v, err)
	}
	if !xtesting.Eventually(5*time.Second, func() bool { v, ok, _ := c.GetInto(nil, "k"); return ok && string(v) == "new" }) {
		t.Fatal("the refresh never stored its value")
	}
	if n, err := c.InvalidateTag(bg, "user:1"); err != nil || n != 1 {
		t.Fatalf("InvalidateTag after the refresh = %d, %v; want the refreshed entry removed", n, err)
	}
	if v, ok, _ := c.GetInto(nil, "k"); ok {
		t.Fatalf("the refreshed entry outlived its tag's invalidation: %q", v)
	}
}

func TestStaleWindowEnds(t *testing.T) {
	// Past StaleFor (and without FailSafeFor) an expired value is a miss:
	// Get waits for the load.
	c := cachetest.New(t, "swr-end", cache.Options{StaleFor: 10 * time.Millisecond})
	setExpired(t, c, "k", "old")
	time.Sleep(20 * time.Millisecond)
	var runs atomic.Int64
	if v, err := c.Get(bg, "k", counting(&runs, 0, "new", nil)); err != nil || string(v) != "new" {
		t.Fatalf("Get past the stale window = %q, %v; want the loaded value", v, err)
	}
	if st := c.Stats(); st.StaleServes != 0 {
		t.Fatalf("%+v: a stale serve past the window", st)
	}
}

func TestFailSafe(t *testing.T) {
	down := errors.New("backend down")
	c := cachetest.New(t, "failsafe", cache.Options{FailSafeFor: time.Minute})
	setExpired(t, c, "k", "old")
	var runs atomic.Int64
	if v, err := c.Get(bg, "k", counting(&runs, 0, "", down)); err != nil || string(v) != "old" {
		t.Fatalf("Get with a failing loader = %q, %v; want the old value", v, err)
	}
	// The fail-safe's pause: no second load for a second, the old value meanwhile.
	if v, err := c.Get(bg, "k", counting(&runs, 0, "", down)); err != nil || string(v) != "old" {
		t.Fatalf("second Get = %q, %v; want the old value", v, err)
	}
	if st := c.Stats(); runs.Load() != 1 || st.FailSafeServes != 2 || st.LoadErrors != 1 {
		t.Fatalf("runs %d, %+v; want one run and two fail-safe serves", runs.Load(), st)
	}
	// A miss has nothing to fall back on: the error.
	if _, err := c.Get(bg, "missing", counting(&runs, 0, "", down)); !errors.Is(err, down) {
		t.Fatalf("Get of a missing key with a failing loader = %v; want its error", err)
	}
	// Without FailSafeFor the loader's error comes back.
	c2 := cachetest.New(t, "nofailsafe", cache.Options{})
	setExpired(t, c2, "k", "old")
	if v, err := c2.Get(bg, "k", counting(&runs, 0, "", down)); !errors.Is(err, down) {
		t.Fatalf("Get without FailSafeFor = %q, %v; want the loader's error", v, err)
	}
}

func TestFailSafeResumesAfterPause(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the fail-safe's one-second pause")
	}
	c := cachetest.New(t, "failsafe-resume", cache.Options{FailSafeFor: time.Minute})
	setExpired(t, c, "k", "old")
	var runs atomic.Int64
	c.Get(bg, "k", counting(&runs, 0, "", errors.New("down")))
	time.Sleep(1100 * time.Millisecond)
	if v, err := c.Get(bg, "k", counting(&runs, 0, "new", nil)); err != nil || string(v) != "new" || runs.Load() != 2 {
		t.Fatalf("Get after the pause = %q, %v (%d runs); want a new load", v, err, runs.Load())
	}
}

func TestSoftTimeout(t *testing.T) {
	c := cachetest.New(t, "soft", cache.Options{FailSafeFor: time.Minute, SoftTimeout: 20 * time.Millisecond})
	setExpired(t, c, "k", "old")
	var runs atomic.Int64
	release := make(chan struct{})
	loader := func(ctx context.Context, _ string) ([]byte, error) {
		runs.Add(1)
		<-release
		return []byte("new"), nil
	}
	if v, err := c.Get(bg, "k", loader); err != nil || string(v) != "old" {
		t.Fatalf("Get past the soft timeout = %q, %v; want the old value", v, err)
	}
	// The load goes on: released now, it stores its value.
	close(release)
	if !xtesting.Eventually(5*time.Second, func() bool { v, ok, _ := c.GetInto(nil, "k"); return ok && string(v) == "new" }) {
		t.Fatal("the load that outlived its caller never stored its value")
	}
	if st := c.Stats(); runs.Load() != 1 || st.StaleServes != 1 || st.Loads != 1 {
		t.Fatalf("runs %d, %+v", runs.Load(), st)
	}
}

func TestHardTimeout(t *testing.T) {
	c := cachetest.New(t, "hard", cache.Options{HardTimeout: 30 * time.Millisecond})
	var runs atomic.Int64
	start := time.Now()
	_, err := c.Get(bg, "k", counting(&runs, time.Hour, "never", nil))
	if !errors.Is(err, cache.ErrLoadTimeout) {
		t.Fatalf("Get of a load past HardTimeout = %v; want ErrLoadTimeout", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("the hard timeout returned after %v", el)
	}
	// The loader's context ended at the hard timeout: it returned, and its
	// load ended as failed (the key is free for the next load).
	if !xtesting.Eventually(5*time.Second, func() bool { return c.Stats().LoadErrors == 1 }) {
		t.Fatalf("the timed-out load never ended: %+v", c.Stats())
	}
	if v, err := c.Get(bg, "k2", counting(&runs, 0, "quick", nil)); err != nil || string(v) != "quick" {
		t.Fatalf("a load within the timeout = %q, %v", v, err)
	}
	// With a kept value the hard timeout is a fail-safe serve.
	c2 := cachetest.New(t, "hard-kept", cache.Options{FailSafeFor: time.Minute, HardTimeout: 30 * time.Millisecond})
	setExpired(t, c2, "k", "old")
	if v, err := c2.Get(bg, "k", counting(&runs, time.Hour, "never", nil)); err != nil || string(v) != "old" {
		t.Fatalf("Get past HardTimeout with a kept value = %q, %v; want it", v, err)
	}
	if st := c2.Stats(); st.FailSafeServes != 1 {
		t.Fatalf("%+v; want one fail-safe serve", st)
	}
}

func TestRefreshAhead(t *testing.T) {
	// Entries live 10 s; the last 99% of that is the refresh-ahead window,
	// so a hit 200 ms after the Set is in it, far from the deadline.
	c := cachetest.New(t, "ahead", cache.Options{Expire: 10 * time.Second, RefreshAhead: 0.99})
	mustSet(t, c, "k", "old")
	var runs atomic.Int64
	release := make(chan struct{})
	loader := func(ctx context.Context, _ string) ([]byte, error) {
		runs.Add(1)
		<-release
		return []byte("new"), nil
	}
	if v, err := c.Get(bg, "k", loader); err != nil || string(v) != "old" {
		t.Fatalf("Get of a fresh entry = %q, %v", v, err)
	}
	if runs.Load() != 0 || c.Stats().Refreshes != 0 {
		t.Fatal("a refresh before the window")
	}
	time.Sleep(200 * time.Millisecond)
	for range 20 {
		if v, err := c.Get(bg, "k", loader); err != nil || string(v) != "old" {
			t.Fatalf("Get in the window = %q, %v; want the current value at once", v, err)
		}
	}
	close(release)
	if !xtesting.Eventually(5*time.Second, func() bool { v, ok, _ := c.GetInto(nil, "k"); return ok && string(v) == "new" }) {
		t.Fatal("the refresh never stored its value")
	}
	// The refreshed entry starts a new life: a Get now is out of the window.
	c.Get(bg, "k", loader)
	if st := c.Stats(); runs.Load() != 1 || st.Refreshes != 1 || st.Misses != 0 {
		t.Fatalf("runs %d, %+v; want one refresh and no miss", runs.Load(), st)
	}
	// GetInto never refreshes.
	time.Sleep(200 * time.Millisecond)
	c.GetInto(nil, "k")
	time.Sleep(20 * time.Millisecond)
	if runs.Load() != 1 {
		t.Fatal("GetInto started a refresh")
	}
}

func TestNegativeCaching(t *testing.T) {
	c := cachetest.New(t, "negative", cache.Options{NotFoundExpire: time.Minute})
	var runs atomic.Int64
	missing := counting(&runs, 0, "", fmt.Errorf("no such row: %w", cache.ErrNotFound))
	if _, err := c.Get(bg, "k", missing); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get with a not-found loader = %v; want ErrNotFound", err)
	}
	for range 5 {
		if _, err := c.Get(bg, "k", missing); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Get of a remembered not-found = %v", err)
		}
	}
	if _, ok, _ := c.GetInto(nil, "k"); ok {
		t.Fatal("GetInto found a value for a not-found key")
	}
	if _, err := c.Inspect("k"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Inspect = %v", err)
	}
	if keys, _ := c.Keys(bg); len(keys) != 0 {
		t.Fatalf("Keys = %v; a not-found is no key", keys)
	}
	if st := c.Stats(); runs.Load() != 1 || st.NegativeHits != 5 {
		t.Fatalf("runs %d, %+v; want the loader once and 5 negative hits", runs.Load(), st)
	}
	mustSet(t, c, "k", "now here")
	if v, err := c.Get(bg, "k", missing); err != nil || string(v) != "now here" {
		t.Fatalf("Get after a Set = %q, %v", v, err)
	}
	// Another loader error is not remembered; nor a not-found without NotFoundExpire.
	if _, err := c.Get(bg, "other", counting(&runs, 0, "", errors.New("down"))); err == nil {
		t.Fatal("a failing loader's Get succeeded")
	}
	c2 := cachetest.New(t, "no-negative", cache.Options{})
	c2.Get(bg, "k", missing)
	before := runs.Load()
	c2.Get(bg, "k", missing)
	if runs.Load() != before+1 {
		t.Fatal("a not-found was remembered without NotFoundExpire")
	}
}

func TestNegativeExpires(t *testing.T) {
	c := cachetest.New(t, "negative-exp", cache.Options{NotFoundExpire: 20 * time.Millisecond})
	var runs atomic.Int64
	c.Get(bg, "k", counting(&runs, 0, "", cache.ErrNotFound))
	time.Sleep(40 * time.Millisecond)
	if v, err := c.Get(bg, "k", counting(&runs, 0, "found", nil)); err != nil || string(v) != "found" || runs.Load() != 2 {
		t.Fatalf("Get after NotFoundExpire = %q, %v (%d runs); want a new load", v, err, runs.Load())
	}
}

func TestLoaderPanic(t *testing.T) {
	c := cachetest.New(t, "panic", cache.Options{})
	_, err := c.Get(bg, "k", func(context.Context, string) ([]byte, error) { panic("boom") })
	var pe *cache.LoaderPanicError
	if !errors.Is(err, cache.ErrLoaderPanic) || !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "TestLoaderPanic") {
		t.Fatalf("Get with a panicking loader = %v (%+v); want ErrLoaderPanic with the value and stack", err, pe)
	}
	// The loading record was released: the next Get loads.
	if v, err := c.Get(bg, "k", func(context.Context, string) ([]byte, error) { return []byte("v"), nil }); err != nil || string(v) != "v" {
		t.Fatalf("Get after the panic = %q, %v", v, err)
	}
	// A panic with an error wraps that error too; a waiter in this process gets ErrLoaderFailed.
	boom := errors.New("boom")
	var wg sync.WaitGroup
	started := make(chan struct{})
	var waiterErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-started
		time.Sleep(20 * time.Millisecond)
		_, waiterErr = c.Get(bg, "k2", func(context.Context, string) ([]byte, error) { return []byte("second"), nil })
	}()
	_, err = c.Get(bg, "k2", func(context.Context, string) ([]byte, error) {
		close(started)
		time.Sleep(100 * time.Millisecond)
		panic(boom)
	})
	wg.Wait()
	if !errors.Is(err, boom) || !errors.Is(err, cache.ErrLoaderPanic) {
		t.Fatalf("Get = %v; want the panic's error and ErrLoaderPanic", err)
	}
	if waiterErr != nil && !errors.Is(waiterErr, cache.ErrLoaderFailed) {
		t.Fatalf("waiter got %v; want ErrLoaderFailed (or a value if it came late)", waiterErr)
	}
	// A background refresh's panic is not the caller's: the value stays.
	c2 := cachetest.New(t, "panic-bg", cache.Options{StaleFor: time.Minute})
	setExpired(t, c2, "k", "old")
	var runs atomic.Int64
	if v, err := c2.Get(bg, "k", func(context.Context, string) ([]byte, error) { runs.Add(1); panic("bg boom") }); err != nil || string(v) != "old" {
		t.Fatalf("stale Get = %q, %v", v, err)
	}
	if !xtesting.Eventually(5*time.Second, func() bool { return c2.Stats().LoadErrors == 1 }) {
		t.Fatal("the panicking refresh never ended")
	}
	if v, err := c2.Get(bg, "k", nil); err == nil {
		t.Fatalf("Get without loader = %q; the stale value is not a hit", v)
	}
}

func TestLoaderOptionsValidateAndConflict(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	for _, o := range []cache.Options{
		{StaleFor: -1}, {FailSafeFor: -1}, {SoftTimeout: -1}, {HardTimeout: -1}, {NotFoundExpire: -1},
		{RefreshAhead: -0.1}, {RefreshAhead: 1}, {SoftTimeout: time.Second},
		{FailSafeFor: time.Minute, SoftTimeout: time.Second, HardTimeout: time.Second},
	} {
		if _, err := sp.Use("bad", o); !errors.Is(err, cache.ErrInvalidConfig) {
			t.Errorf("Use(%v) = %v; want ErrInvalidConfig", o, err)
		}
	}
	o := cache.Options{Expire: time.Minute, StaleFor: time.Second, FailSafeFor: time.Hour, SoftTimeout: time.Millisecond,
		HardTimeout: time.Second, RefreshAhead: 0.2, NotFoundExpire: 5 * time.Second}
	c, err := sp.Use("opts", o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := sp.Lookup("opts"); got != o || c.Options() != o {
		t.Fatalf("Lookup = %+v; want %+v", got, o)
	}
	o2 := o
	o2.RefreshAhead = 0.3
	if _, err := sp.Use("opts", o2); !errors.Is(err, cache.ErrOptionsConflict) || !strings.Contains(err.Error(), "RefreshAhead") {
		t.Fatalf("Use with another RefreshAhead = %v; want ErrOptionsConflict naming it", err)
	}
}
