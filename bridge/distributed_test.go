package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
	"github.com/cluster2/cluster2/internal/redistest"
)

// site is one machine of a fleet in one test process: its own arena and
// cache space, and its own bridge tracking into it.
type site struct {
	sp *cache.Space
	b  *bridge.Bridge
	c  *cache.Cache
}

func newSite(t *testing.T, srv *redistest.Server, opts cache.Options, local bool) *site {
	t.Helper()
	return newSiteWith(t, srv, opts, bridge.Config{LocalWrites: local})
}

// newSiteWith is newSite with more of the bridge's Config (its Addr,
// Caches, PingEvery and Timeout are the test's).
func newSiteWith(t *testing.T, srv *redistest.Server, opts cache.Options, cfg bridge.Config) *site {
	t.Helper()
	sp := cachetest.NewSpace(t, 4<<20)
	cfg.Addr, cfg.Caches, cfg.PingEvery, cfg.Timeout = srv.Addr(), []string{"d"}, 50*time.Millisecond, 2*time.Second
	b, err := bridge.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Attach(sp); err != nil {
		t.Fatal(err)
	}
	c, err := sp.Use("d", opts)
	if err != nil {
		t.Fatal(err)
	}
	b.Track(b.Target(sp))
	waitFor(t, 5*time.Second, "the bridge comes up", b.Up)
	return &site{sp: sp, b: b, c: c}
}

// get is Get with a loader that must not run (the value is in Redis).
func (h *site) get(t *testing.T, key string) string {
	t.Helper()
	v, err := h.c.Get(context.Background(), key, func(context.Context, string) ([]byte, error) {
		return []byte("loaded"), nil
	})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return string(v)
}

func (h *site) set(t *testing.T, key, v string, tags ...string) {
	t.Helper()
	if ok, err := h.c.Set(context.Background(), key, []byte(v), cache.SetOptions{Tags: tags}); err != nil || !ok {
		t.Fatalf("set %q: %v %v", key, ok, err)
	}
}

// setHeard is set, then waits for the write's own invalidation to reach
// the host (it would drop what a Get keeps before it arrives).
func (h *site) setHeard(t *testing.T, key, v string) {
	t.Helper()
	n := h.b.Stats().Invalidations
	h.set(t, key, v)
	waitFor(t, 5*time.Second, "the write's own invalidation", func() bool { return h.b.Stats().Invalidations > n })
}

// local reports what the host's arena holds for key (no Redis).
func (h *site) local(key string) (string, bool) {
	v, ok, _ := h.c.GetInto(nil, key)
	return string(v), ok
}

func twoHosts(t *testing.T, opts cache.Options) (*redistest.Server, *site, *site) {
	srv := redistest.Start(t)
	return srv, newSite(t, srv, opts, false), newSite(t, srv, opts, false)
}

func TestWriteOnAIsReadOnB(t *testing.T) {
	_, a, b := twoHosts(t, cache.Options{})
	a.set(t, "k", "v1")
	if got := b.get(t, "k"); got != "v1" {
		t.Fatalf("B read %q, want A's v1", got)
	}
	// The Set's invalidation may reach B's bridge after B's Get read Redis:
	// that load stores nothing (it cannot tell the write came before), and
	// the next Get stores.
	waitFor(t, 5*time.Second, "B's arena holds A's value", func() bool {
		v, ok := b.local("k")
		if !ok {
			b.get(t, "k")
		}
		return ok && v == "v1"
	})
	// An update on A: B's arena loses the entry, and B's next Get returns the
	// new value, never the old one.
	start := time.Now()
	a.set(t, "k", "v2")
	waitFor(t, 5*time.Second, "B's arena drops the updated key", func() bool { _, ok := b.local("k"); return !ok })
	t.Logf("B's arena lost the key %v after A's Set began", time.Since(start))
	if got := b.get(t, "k"); got != "v2" {
		t.Fatalf("B read %q after A's update, want v2", got)
	}
	// A reads its own write.
	if got := a.get(t, "k"); got != "v2" {
		t.Fatalf("A read %q after its own update, want v2", got)
	}
	// A delete on A reaches B.
	if _, _, err := a.c.Del(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "B's arena drops the deleted key", func() bool { _, ok := b.local("k"); return !ok })
	if _, err := b.c.Get(context.Background(), "k", nil); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("B's Get of a deleted key: %v, want ErrNotFound", err)
	}
}

func TestTagsAndClearReachEveryHost(t *testing.T) {
	_, a, b := twoHosts(t, cache.Options{})
	na, nb := a.b.Stats().Invalidations, b.b.Stats().Invalidations
	a.set(t, "t1", "x", "red")
	a.set(t, "t2", "x", "red", "blue")
	a.set(t, "t3", "x", "blue")
	// The writes' own invalidations would drop what a Get keeps before they
	// arrive: let them reach both hosts first.
	waitFor(t, 5*time.Second, "the writes' invalidations", func() bool {
		return a.b.Stats().Invalidations >= na+3 && b.b.Stats().Invalidations >= nb+3
	})
	for _, k := range []string{"t1", "t2", "t3"} {
		b.get(t, k)
		a.get(t, k)
	}
	if _, err := a.c.InvalidateTag(context.Background(), "red"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"t1", "t2"} {
		if _, ok := a.local(k); ok {
			t.Fatalf("A still holds %q after its InvalidateTag", k)
		}
		waitFor(t, 5*time.Second, "B drops "+k, func() bool { _, ok := b.local(k); return !ok })
		if v, err := b.c.Get(context.Background(), k, nil); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("B's Get of %q after the tag's invalidation: %q %v", k, v, err)
		}
	}
	if v, ok := b.local("t3"); !ok || v != "x" {
		t.Fatal("B lost t3, which has no tag red")
	}
	for i := range 50 {
		a.set(t, fmt.Sprint("c", i), "x")
		b.get(t, fmt.Sprint("c", i))
	}
	if _, err := a.c.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "B's arena is empty", func() bool {
		keys, _ := b.c.Keys(context.Background())
		return len(keys) == 0
	})
	if got := b.get(t, "c7"); got != "loaded" {
		t.Fatalf("B read %q after A's Clear, want its loader's value", got)
	}
}

func TestRedisCLIWriteInvalidatesEveryHost(t *testing.T) {
	srv, a, b := twoHosts(t, cache.Options{})
	a.set(t, "k", "v1")
	a.get(t, "k")
	b.get(t, "k")
	if _, err := srv.CLI("SET", "cluster2:d:k", "from-cli"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*site{a, b} {
		waitFor(t, 5*time.Second, "the arena drops the key", func() bool { _, ok := h.local("k"); return !ok })
		if got := h.get(t, "k"); got != "from-cli" {
			t.Fatalf("read %q, want redis-cli's value", got)
		}
	}
	// An expiry in Redis invalidates too.
	if _, err := srv.CLI("PEXPIRE", "cluster2:d:k", "30"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*site{a, b} {
		waitFor(t, 5*time.Second, "the arena drops the expired key", func() bool { _, ok := h.local("k"); return !ok })
	}
}

func TestLoaderRunsOnceAndIsSharedThroughRedis(t *testing.T) {
	_, a, b := twoHosts(t, cache.Options{Expire: time.Minute})
	var runs atomic.Int32
	load := func(context.Context, string) ([]byte, error) { runs.Add(1); return []byte("computed"), nil }
	if v, err := a.c.Get(context.Background(), "k", load); err != nil || string(v) != "computed" {
		t.Fatal(v, err)
	}
	if v, err := b.c.Get(context.Background(), "k", load); err != nil || string(v) != "computed" {
		t.Fatal(v, err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the loader ran %d times for two hosts, want 1 (B reads A's value from Redis)", n)
	}
	// The local TTL is capped by Redis's.
	a.set(t, "short", "v")
	srvTTL := 300 * time.Millisecond
	if _, err := a.b.Client(); err != nil {
		t.Fatal(err)
	}
	cl, _ := a.b.Client()
	if err := cl.Do(context.Background(), cl.B().Pexpire().Key("cluster2:d:short").Milliseconds(int64(srvTTL/time.Millisecond)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	b.get(t, "short")
	e, err := b.c.Inspect("short")
	if err == nil && e.TTL > srvTTL {
		t.Fatalf("B's local TTL %v exceeds Redis's %v", e.TTL, srvTTL)
	}
}

// TestGetAppendReadsTheSecondTier: GetAppend of a distributed cache is its
// Get into a buffer: a miss reads Redis (B gets A's loaded value, the
// loader once for both hosts; without a loader too), and once the value is
// in B's arena a hit allocates nothing (a Redis GET would) and misses
// nothing.
func TestGetAppendReadsTheSecondTier(t *testing.T) {
	_, a, b := twoHosts(t, cache.Options{Expire: time.Minute})
	var runs atomic.Int32
	load := func(context.Context, string) ([]byte, error) { runs.Add(1); return []byte("computed"), nil }
	buf := make([]byte, 0, 64)
	for _, h := range []*site{a, b} {
		v, err := h.c.GetAppend(context.Background(), append(buf[:0], '>'), "k", load)
		if err != nil || string(v) != ">computed" {
			t.Fatalf("GetAppend = %q, %v; want >computed", v, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the loader ran %d times for two hosts, want 1", n)
	}
	a.set(t, "other", "from A")
	if v, err := b.c.GetAppend(context.Background(), buf[:0], "other", nil); err != nil || string(v) != "from A" {
		t.Fatalf("B's GetAppend without a loader = %q, %v; want A's value from Redis", v, err)
	}
	// B's load of k may have stored nothing (A's Set of k's invalidation
	// came after it read Redis): Get until B's arena holds it.
	waitFor(t, 5*time.Second, "B's arena holds k", func() bool {
		_, ok := b.local("k")
		if !ok {
			b.get(t, "k")
		}
		return ok
	})
	misses := b.c.Stats().Misses
	allocs := testing.AllocsPerRun(1000, func() {
		var err error
		if buf, err = b.c.GetAppend(context.Background(), buf[:0], "k", load); err != nil || string(buf) != "computed" {
			t.Fatalf("B's hit = %q, %v", buf, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a distributed cache's GetAppend hit allocates %v times, want 0", allocs)
	}
	if m := b.c.Stats().Misses; m != misses {
		t.Fatalf("%d of B's hits missed the arena", m-misses)
	}
}

func TestCountersAreRefused(t *testing.T) {
	_, a, _ := twoHosts(t, cache.Options{})
	if _, err := a.c.Add(context.Background(), "n", 1, cache.AddOptions{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Add on a distributed cache: %v, want ErrUnsupported", err)
	}
	if _, err := a.c.CompareAndSwap(context.Background(), "n", nil, []byte("x"), cache.SetOptions{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CompareAndSwap on a distributed cache: %v, want ErrUnsupported", err)
	}
	if _, err := a.sp.Use("p", cache.Options{Persist: true}); err != nil {
		t.Fatal(err) // not distributed: fine
	}
	if err := a.sp.Distribute("p", a.b); !errors.Is(err, cache.ErrInvalidConfig) {
		t.Fatalf("distributing a persistent cache: %v, want ErrInvalidConfig", err)
	}
}

func TestRedisKilledThenRestarted(t *testing.T) {
	const failSafe = 2 * time.Second
	srv := redistest.Start(t)
	opts := cache.Options{FailSafeFor: failSafe}
	a, b := newSite(t, srv, opts, false), newSite(t, srv, opts, true)
	for i := range 20 {
		a.set(t, fmt.Sprint("k", i), "v")
	}
	for i := range 20 {
		a.get(t, fmt.Sprint("k", i))
		b.get(t, fmt.Sprint("k", i))
	}
	srv.Kill()
	waitFor(t, 5*time.Second, "both bridges go down", func() bool { return !a.b.Up() && !b.b.Up() })
	marked := time.Now()
	// Hits are served, stale-marked: GetInto (fresh only) misses, Get with a
	// loader serves the kept value instead of its loader's (Redis is down:
	// the load fails, the fail-safe serves).
	for _, h := range []*site{a, b} {
		if _, ok := h.local("k1"); ok {
			t.Fatal("a value is trusted as fresh while Redis is down")
		}
		if got := h.get(t, "k1"); got != "v" {
			t.Fatalf("Get while Redis is down: %q, want the kept value", got)
		}
		if h.c.Stats().FailSafeServes == 0 {
			t.Fatal("no fail-safe serve counted")
		}
	}
	// Writes fail clearly on A; B allows local writes.
	_, err := a.c.Set(context.Background(), "k1", []byte("new"), cache.SetOptions{})
	if !errors.Is(err, bridge.ErrRedisDown) || !errors.Is(err, cache.ErrRemoteDown) {
		t.Fatalf("Set while Redis is down: %v, want ErrRedisDown", err)
	}
	if _, _, err := a.c.Del(context.Background(), "k1"); !errors.Is(err, bridge.ErrRedisDown) {
		t.Fatalf("Del while Redis is down: %v, want ErrRedisDown", err)
	}
	if ok, err := b.c.Set(context.Background(), "local", []byte("x"), cache.SetOptions{}); err != nil || !ok {
		t.Fatalf("a local write with LocalWrites: %v %v", ok, err)
	}
	// A miss with nothing kept runs the loader (Redis is not the source).
	if got := a.get(t, "absent"); got != "loaded" {
		t.Fatalf("a miss while Redis is down: %q", got)
	}
	// Past the fail-safe limit nothing stale is served.
	time.Sleep(time.Until(marked.Add(failSafe + 100*time.Millisecond)))
	a.c.Get(context.Background(), "k2", nil)
	if got := a.get(t, "k2"); got != "loaded" {
		t.Fatalf("past its fail-safe limit a stale value was served: %q", got)
	}
	srv.Restart() // empty: no persistence
	waitFor(t, 10*time.Second, "both bridges come back", func() bool { return a.b.Up() && b.b.Up() })
	// Both converge on what Redis has: B's local write is revalidated away,
	// and both read one value for every key.
	if got := b.get(t, "local"); got != "loaded" && got != "x" {
		t.Fatalf("B's local write after the reconnect: %q", got)
	}
	for i := range 20 {
		k := fmt.Sprint("k", i)
		va, vb := a.get(t, k), b.get(t, k)
		if va != vb {
			t.Fatalf("%s: A reads %q, B %q after the restart", k, va, vb)
		}
	}
	a.set(t, "k1", "after")
	waitFor(t, 5*time.Second, "B reads A's write after the restart", func() bool { return b.get(t, "k1") == "after" })
}

func TestLoadRacingAWriteStoresNothing(t *testing.T) {
	_, a, b := twoHosts(t, cache.Options{})
	a.set(t, "k", "old")
	// B's loader-once load of "k" reads Redis ("old") before A's update; the
	// update's invalidation reaches B while the load runs, so the load's
	// value is not stored and B's next Get reads the new one.
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, err := b.c.Get(context.Background(), "slow", func(context.Context, string) ([]byte, error) {
			close(entered)
			<-release
			return []byte("loaded-old"), nil
		})
		if err != nil {
			t.Error(err)
		}
		done <- string(v)
	}()
	<-entered
	a.set(t, "slow", "new") // while B's loader runs
	time.Sleep(50 * time.Millisecond)
	close(release)
	<-done
	if v, ok := b.local("slow"); ok {
		t.Fatalf("B stored %q from a load that raced a write", v)
	}
	if got := b.get(t, "slow"); got != "new" {
		t.Fatalf("B read %q, want new", got)
	}
	keys, _ := b.c.Keys(context.Background())
	sort.Strings(keys)
	t.Log(keys)
}

// TestUntrackedLoadsAreNotTrusted: a value read from Redis while the host is
// not tracking (no invalidation would reach the arena) is served to its
// caller and kept only stale (FailSafeFor: the fail-safe may serve it, no
// Get trusts it); a cache that keeps no expired values stores nothing. Once
// tracking is back, loads are kept fresh again.
func TestUntrackedLoadsAreNotTrusted(t *testing.T) {
	srv := redistest.Start(t)
	a := newSite(t, srv, cache.Options{FailSafeFor: time.Minute}, false)
	plain, err := a.sp.Use("d2", cache.Options{}) // not distributed: always trusted
	if err != nil {
		t.Fatal(err)
	}
	a.setHeard(t, "k", "v")
	a.get(t, "k")
	if _, ok := a.local("k"); !ok {
		t.Fatal("a load while tracking is not kept")
	}
	if err := a.c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	a.sp.EndTracking(0) // as when the tracking connection is lost, before its stale marks
	if a.sp.Tracking() {
		t.Fatal("still tracking")
	}
	loads := a.c.Stats().Loads
	for range 3 {
		if got := a.get(t, "k"); got != "v" {
			t.Fatalf("an untracked Get: %q, want Redis's", got)
		}
		if v, ok := a.local("k"); ok {
			t.Fatalf("an untracked load is trusted: %q", v)
		}
	}
	if n := a.c.Stats().Loads - loads; n != 3 {
		t.Fatalf("%d loads for 3 untracked Gets, want 3 (nothing trusted)", n)
	}
	if _, err := plain.Set(context.Background(), "p", []byte("x"), cache.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := plain.GetInto(nil, "p"); !ok {
		t.Fatal("a local cache's value is not kept while untracked")
	}
	// Kept stale: with Redis gone, the fail-safe serves it.
	srv.Kill()
	waitFor(t, 5*time.Second, "the bridge goes down", func() bool { return !a.b.Up() })
	if got := a.get(t, "k"); got != "v" {
		t.Fatalf("fail-safe while Redis is down: %q, want the kept value", got)
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "the bridge comes back", func() bool { return a.b.Up() && a.sp.Tracking() })
	a.setHeard(t, "k", "w")
	if got := a.get(t, "k"); got != "w" {
		t.Fatalf("after the reconnect: %q", got)
	}
	if v, ok := a.local("k"); !ok || v != "w" {
		t.Fatalf("a load while tracking again: %q %v, want it kept", v, ok)
	}
}

// TestUntrackedLoadsOfACacheKeepingNothingStoreNothing: without FailSafeFor
// or StaleFor an untracked load leaves nothing in the arena, and its "not
// found" no negative record.
func TestUntrackedLoadsOfACacheKeepingNothingStoreNothing(t *testing.T) {
	srv := redistest.Start(t)
	a := newSite(t, srv, cache.Options{NotFoundExpire: time.Minute}, false)
	a.set(t, "k", "v")
	a.sp.EndTracking(0)
	before := a.c.Stats()
	for range 2 {
		if got := a.get(t, "k"); got != "v" {
			t.Fatalf("an untracked Get: %q", got)
		}
		if _, err := a.c.Get(context.Background(), "none", func(context.Context, string) ([]byte, error) {
			return nil, cache.ErrNotFound
		}); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("an untracked miss: %v, want ErrNotFound", err)
		}
	}
	st := a.c.Stats()
	if st.Loads+st.LoadErrors-before.Loads-before.LoadErrors != 4 || st.NegativeHits != before.NegativeHits {
		t.Fatalf("stats %+v then %+v: want 4 loads, no negative hit (nothing kept)", before, st)
	}
	if _, ok := a.local("k"); ok {
		t.Fatal("an untracked value was stored")
	}
}

// TestLoadAcrossATrackingGapIsNotTrusted: a load that began in one tracking
// epoch and finishes in another (the connection was lost and made again
// while it read Redis: an invalidation may have been missed) keeps its
// value stale; the same load within one epoch keeps it fresh.
func TestLoadAcrossATrackingGapIsNotTrusted(t *testing.T) {
	srv := redistest.Start(t)
	a := newSite(t, srv, cache.Options{FailSafeFor: time.Minute}, false)
	var during atomic.Pointer[func()]
	if err := a.sp.Distribute("d", hooked{a.b, &during}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"same", "gap"} {
		a.setHeard(t, k, "v")
	}
	if got := a.get(t, "same"); got != "v" {
		t.Fatalf("load: %q", got)
	}
	if _, ok := a.local("same"); !ok {
		t.Fatal("a load within one epoch is not kept fresh")
	}
	gap := func() { a.sp.EndTracking(0); a.sp.BeginTracking() }
	during.Store(&gap)
	if got := a.get(t, "gap"); got != "v" {
		t.Fatalf("load across a gap: %q", got)
	}
	during.Store(nil)
	if v, ok := a.local("gap"); ok {
		t.Fatalf("a load across a tracking gap is trusted: %q", v)
	}
	if got := a.get(t, "gap"); got != "v" {
		t.Fatalf("the next Get: %q", got)
	}
	if _, ok := a.local("gap"); !ok {
		t.Fatal("a load in the new epoch is not kept")
	}
}

// hooked is the real bridge as a cache's Remote, running a test's function
// (if any) before each GET goes to Redis.
type hooked struct {
	*bridge.Bridge
	during *atomic.Pointer[func()]
}

func (h hooked) Get(ctx context.Context, name, key string) ([]byte, time.Duration, bool, error) {
	if f := h.during.Load(); f != nil {
		(*f)()
	}
	return h.Bridge.Get(ctx, name, key)
}
