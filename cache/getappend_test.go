package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// TestGetAppendHitAllocatesNothing: a hit by GetAppend with a loader into a
// buffer with room allocates nothing (Get's one allocation is its copy:
// TestGetHitAllocatesOnlyItsValue), with or without the loader options, for
// a fresh hit and for a hit served while a background refresh of the key
// runs (in its stale window, and in its refresh-ahead window); the loader
// never runs for a fresh hit.
func TestGetAppendHitAllocatesNothing(t *testing.T) {
	const key = "key-0000000000001"
	value := string(make([]byte, 64))
	all := cache.Options{Expire: time.Hour, StaleFor: time.Minute, FailSafeFor: time.Hour, RefreshAhead: 0.1, NotFoundExpire: time.Second}
	for _, opts := range []cache.Options{{}, all} {
		c := cachetest.New(t, "t", opts)
		mustSet(t, c, key, value)
		loader := func(context.Context, string) ([]byte, error) {
			t.Error("a hit ran its loader")
			return nil, nil
		}
		assertNoAllocs(t, fmt.Sprintf("options %+v: a fresh hit", opts), c, key, loader, 64)
		if st := c.Stats(); st.Loads != 0 || st.Refreshes != 0 {
			t.Fatalf("options %+v: %d loads, %d refreshes for fresh hits", opts, st.Loads, st.Refreshes)
		}
	}

	// While a refresh runs (its loader held), every hit serves the value it
	// has: the first one started the refresh, the others find it running.
	for _, tc := range []struct {
		name  string
		opts  cache.Options
		setUp func(c *cache.Cache)
	}{
		{"stale", cache.Options{Expire: time.Hour, StaleFor: time.Minute}, func(c *cache.Cache) { setExpired(t, c, key, value) }},
		// Entries live 10 s, the last 99% of it the window: 200 ms after the Set a hit is in it.
		{"ahead", cache.Options{Expire: 10 * time.Second, RefreshAhead: 0.99}, func(c *cache.Cache) { mustSet(t, c, key, value); time.Sleep(200 * time.Millisecond) }},
	} {
		c := cachetest.New(t, tc.name, tc.opts)
		tc.setUp(c)
		release := make(chan struct{})
		loader := func(context.Context, string) ([]byte, error) { <-release; return []byte("new"), nil }
		if v, err := c.GetAppend(bg, nil, key, loader); err != nil || len(v) != 64 {
			t.Fatalf("%s: the first GetAppend = %d bytes, %v", tc.name, len(v), err)
		}
		if !xtesting.Eventually(5*time.Second, func() bool { return c.Stats().Refreshes == 1 }) {
			t.Fatalf("%s: no refresh started", tc.name)
		}
		assertNoAllocs(t, tc.name+": a hit while its refresh runs", c, key, loader, 64)
		close(release)
		if !xtesting.Eventually(5*time.Second, func() bool { v, ok, _ := c.GetInto(nil, key); return ok && string(v) == "new" }) {
			t.Fatalf("%s: the refresh never stored its value", tc.name)
		}
		if st := c.Stats(); st.Refreshes != 1 || st.Loads != 1 {
			t.Fatalf("%s: %+v; want one refresh", tc.name, st)
		}
	}
}

// assertNoAllocs fails t unless GetAppend of key into a buffer with room
// returns n bytes and allocates nothing.
func assertNoAllocs(t *testing.T, what string, c *cache.Cache, key string, loader cache.Loader, n int) {
	t.Helper()
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(1000, func() {
		var err error
		if buf, err = c.GetAppend(bg, buf[:0], key, loader); err != nil || len(buf) != n {
			t.Fatalf("%s: GetAppend = %d bytes, %v", what, len(buf), err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%s allocates %v times, want 0", what, allocs)
	}
}

// getter is one way of calling Get with a loader; all of them must answer
// alike (TestGetAppendAnswersAsGet).
type getter struct {
	name string
	get  func(c *cache.Cache, key string, loader Loader) ([]byte, error)
}

// appendPrefix is what the buffer getter's dst holds before GetAppend.
const appendPrefix = "prefix:"

var getters = []getter{
	{"Get", func(c *cache.Cache, key string, loader Loader) ([]byte, error) { return c.Get(bg, key, loader) }},
	{"GetAppend-nil", func(c *cache.Cache, key string, loader Loader) ([]byte, error) {
		return c.GetAppend(bg, nil, key, loader)
	}},
	{"GetAppend-buf", func(c *cache.Cache, key string, loader Loader) ([]byte, error) {
		dst := append(make([]byte, 0, 256), appendPrefix...)
		v, err := c.GetAppend(bg, dst, key, loader)
		if !bytes.HasPrefix(v, []byte(appendPrefix)) {
			return nil, fmt.Errorf("GetAppend's result %q lost dst", v)
		}
		if err != nil && len(v) != len(appendPrefix) {
			return nil, fmt.Errorf("GetAppend with an error appended %q", v[len(appendPrefix):])
		}
		if err != nil {
			return nil, err // dst unchanged: Get's nil
		}
		return v[len(appendPrefix):], nil
	}},
}

// answer formats one call's result: the value (nil and empty told apart),
// the sentinels its error wraps, and the error's text.
func answer(v []byte, err error) string {
	s := "nil"
	if v != nil {
		s = fmt.Sprintf("%q", v)
	}
	if err == nil {
		return s
	}
	var is []string
	for _, e := range []error{cache.ErrNotFound, cache.ErrLoaderFailed, cache.ErrLoadTimeout, errBackendDown} {
		if errors.Is(err, e) {
			is = append(is, e.Error())
		}
	}
	return fmt.Sprintf("%s, error [%s] %v", s, strings.Join(is, ","), err)
}

// errBackendDown is the failing loaders' error.
var errBackendDown = errors.New("backend down")

// TestGetAppendAnswersAsGet: Get, GetAppend into nil and GetAppend into a
// buffer holding a prefix give the same answers (value, nil or empty,
// error and its text), count the same statistics and run the loader as
// often, over the loader options' paths: hits, an empty value, loads,
// loader errors, no loader, stale serving, refresh ahead, fail-safe, the
// soft timeout and negative caching. Each scenario's answers are also
// checked against what Get is documented to return.
func TestGetAppendAnswersAsGet(t *testing.T) {
	notFound := fmt.Errorf("no such row: %w", cache.ErrNotFound)
	load := func(runs *atomic.Int64, v string, err error) Loader {
		return func(context.Context, string) ([]byte, error) {
			runs.Add(1)
			if err != nil || v == "<nil>" {
				return nil, err
			}
			return []byte(v), nil
		}
	}
	// settled waits until key holds want (a background load stored it),
	// looking with Inspect, which counts no hit or miss: the polls do not
	// change the Stats compared.
	settled := func(t *testing.T, c *cache.Cache, key, want string) {
		t.Helper()
		if !xtesting.Eventually(5*time.Second, func() bool { e, err := c.Inspect(key); return err == nil && string(e.Value) == want }) {
			t.Fatalf("%q never became %q", key, want)
		}
	}
	type scenario struct {
		name string
		opts cache.Options
		// run makes the calls with get and returns their answers.
		run  func(t *testing.T, c *cache.Cache, get getter, runs *atomic.Int64) []string
		want []string // {value or nil, the error's sentinels} of each call, as answer's prefix
	}
	call := func(c *cache.Cache, g getter, key string, l Loader) string { return answer(g.get(c, key, l)) }
	scenarios := []scenario{
		{"hit", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			mustSet(t, c, "k", "v")
			return []string{call(c, g, "k", load(runs, "unused", nil)), call(c, g, "k", nil)}
		}, []string{`"v"`, `"v"`}},
		{"empty value", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			mustSet(t, c, "k", "")
			return []string{call(c, g, "k", load(runs, "unused", nil)), call(c, g, "k", nil)}
		}, []string{`""`, `""`}},
		{"load", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			return []string{call(c, g, "k", load(runs, "loaded", nil)), call(c, g, "k", load(runs, "", errBackendDown))}
		}, []string{`"loaded"`, `"loaded"`}},
		{"load of an empty value", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			return []string{call(c, g, "k", load(runs, "<nil>", nil)), call(c, g, "k", nil)}
		}, []string{`""`, `""`}},
		{"no loader", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			return []string{call(c, g, "k", nil)}
		}, []string{"nil, error [" + cache.ErrNotFound.Error() + "]"}},
		{"loader error", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			return []string{call(c, g, "k", load(runs, "", errBackendDown)), call(c, g, "k", load(runs, "second", nil))}
		}, []string{"nil, error [" + errBackendDown.Error() + "]", `"second"`}},
		{"not found, not remembered", cache.Options{}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			return []string{call(c, g, "k", load(runs, "", notFound)), call(c, g, "k", load(runs, "", notFound))}
		}, []string{"nil, error [" + cache.ErrNotFound.Error() + "]", "nil, error [" + cache.ErrNotFound.Error() + "]"}},
		{"negative", cache.Options{NotFoundExpire: time.Minute}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			return []string{call(c, g, "k", load(runs, "", notFound)), call(c, g, "k", load(runs, "unused", nil)), call(c, g, "k", nil)}
		}, []string{"nil, error [" + cache.ErrNotFound.Error() + "]", "nil, error [" + cache.ErrNotFound.Error() + "]", "nil, error [" + cache.ErrNotFound.Error() + "]"}},
		{"stale", cache.Options{Expire: time.Minute, StaleFor: time.Minute}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			setExpired(t, c, "k", "old")
			first := call(c, g, "k", load(runs, "new", nil))
			settled(t, c, "k", "new")
			return []string{first, call(c, g, "k", load(runs, "unused", nil))}
		}, []string{`"old"`, `"new"`}},
		{"stale, failing refresh", cache.Options{Expire: time.Minute, StaleFor: time.Minute}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			setExpired(t, c, "k", "old")
			first := call(c, g, "k", load(runs, "", errBackendDown))
			if !xtesting.Eventually(5*time.Second, func() bool { return c.Stats().LoadErrors == 1 }) {
				t.Fatal("the refresh never ended")
			}
			return []string{first, call(c, g, "k", nil)}
		}, []string{`"old"`, "nil, error [" + cache.ErrNotFound.Error() + "]"}},
		{"refresh ahead", cache.Options{Expire: 10 * time.Second, RefreshAhead: 0.99}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			mustSet(t, c, "k", "old")
			time.Sleep(200 * time.Millisecond) // into the window: the last 9.9 s of 10
			first := call(c, g, "k", load(runs, "new", nil))
			settled(t, c, "k", "new")
			return []string{first, call(c, g, "k", load(runs, "unused", nil))}
		}, []string{`"old"`, `"new"`}},
		{"fail-safe", cache.Options{FailSafeFor: time.Minute}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			setExpired(t, c, "k", "old")
			return []string{call(c, g, "k", load(runs, "", errBackendDown)), call(c, g, "k", load(runs, "", errBackendDown)),
				call(c, g, "missing", load(runs, "", errBackendDown))}
		}, []string{`"old"`, `"old"`, "nil, error [" + errBackendDown.Error() + "]"}},
		{"fail-safe, not found", cache.Options{FailSafeFor: time.Minute}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			setExpired(t, c, "k", "old")
			return []string{call(c, g, "k", load(runs, "", notFound))}
		}, []string{"nil, error [" + cache.ErrNotFound.Error() + "]"}},
		{"soft timeout", cache.Options{FailSafeFor: time.Minute, SoftTimeout: 20 * time.Millisecond}, func(t *testing.T, c *cache.Cache, g getter, runs *atomic.Int64) []string {
			setExpired(t, c, "k", "old")
			release := make(chan struct{})
			slow := func(context.Context, string) ([]byte, error) { runs.Add(1); <-release; return []byte("new"), nil }
			first := call(c, g, "k", slow)
			close(release)
			settled(t, c, "k", "new")
			return []string{first, call(c, g, "k", nil)}
		}, []string{`"old"`, `"new"`}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var first []string
			var firstStats cache.Stats
			var firstRuns int64
			for i, g := range getters {
				c := cachetest.New(t, "answers", sc.opts)
				var runs atomic.Int64
				got := sc.run(t, c, g, &runs)
				st := c.Stats()
				st.Entries, st.Bytes = 0, 0 // the arena's, not the call's
				if len(got) != len(sc.want) {
					t.Fatalf("%s: %d answers, want %d", g.name, len(got), len(sc.want))
				}
				for j := range got {
					if !strings.HasPrefix(got[j], sc.want[j]) {
						t.Errorf("%s: call %d = %s; want %s…", g.name, j, got[j], sc.want[j])
					}
				}
				if i == 0 {
					first, firstStats, firstRuns = got, st, runs.Load()
					continue
				}
				if strings.Join(got, "\n") != strings.Join(first, "\n") {
					t.Errorf("%s answered\n\t%s\nGet answered\n\t%s", g.name, strings.Join(got, "\n\t"), strings.Join(first, "\n\t"))
				}
				if st != firstStats || runs.Load() != firstRuns {
					t.Errorf("%s: %+v, %d loader runs; Get: %+v, %d", g.name, st, runs.Load(), firstStats, firstRuns)
				}
			}
		})
	}
}
