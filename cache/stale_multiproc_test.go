package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// ---- the loader options across processes ----

// loadOptsResult is what a childLoadOpts prints.
type loadOptsResult struct {
	V, Err                           string
	NotFound, Panic, Failed, Timeout bool
	SawFresh                         bool
}

// childLoadOpts opens cache "opts" with the options in OPTS (JSON), waits
// for the go flag, then Gets "k" with a loader that counts its runs in the
// arena, takes LOAD_MS and then, per LOADER, returns "fresh", fails, says
// not found or panics. It prints its result; with WAIT_FRESH it then waits
// (10 s at most) until GetInto reads "fresh". Closing the space publishes
// its counters.
func childLoadOpts() {
	_, sp := childSpace()
	var o cache.Options
	if err := json.Unmarshal([]byte(os.Getenv("OPTS")), &o); err != nil {
		fail(2, "options: %v", err)
	}
	c, err := sp.Use("opts", o)
	if err != nil {
		fail(2, "use: %v", err)
	}
	off, _, err := sp.Arena().Region(context.Background(), "once", 64, nil)
	if err != nil {
		fail(2, "region: %v", err)
	}
	runs := shm.Ptr[atomic.Uint64](sp.Arena(), off)
	start := shm.Ptr[atomic.Uint64](sp.Arena(), off+8)
	ready := shm.Ptr[atomic.Uint64](sp.Arena(), off+16)
	entered := shm.Ptr[atomic.Uint64](sp.Arena(), off+24)
	served := shm.Ptr[atomic.Uint64](sp.Arena(), off+32)
	ms, _ := strconv.Atoi(os.Getenv("LOAD_MS"))
	n, _ := strconv.Atoi(os.Getenv("N"))
	mode := os.Getenv("LOADER")
	ready.Add(1)
	for start.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	entered.Add(1)
	v, err := c.Get(ctx, "k", func(ctx context.Context, key string) ([]byte, error) {
		runs.Add(1)
		// The load lasts until every process is in its Get (and, with
		// WAIT_SERVED, has been served: the value each gets does not
		// depend on when a loaded machine schedules it), then LOAD_MS.
		xtesting.Eventually(10*time.Second, func() bool {
			return entered.Load() == uint64(n) && (os.Getenv("WAIT_SERVED") == "" || served.Load() == uint64(n))
		})
		time.Sleep(time.Duration(ms) * time.Millisecond)
		switch mode {
		case "fail":
			return nil, errors.New("backend down")
		case "notfound":
			return nil, fmt.Errorf("no row: %w", cache.ErrNotFound)
		case "panic":
			panic("boom in " + strconv.Itoa(os.Getpid()))
		}
		return []byte("fresh"), nil
	})
	served.Add(1)
	// Stay until every process was answered: a loader's process that left
	// would leave its load to a waiter (a second run, as it should).
	xtesting.Eventually(10*time.Second, func() bool { return served.Load() == uint64(n) })
	r := loadOptsResult{V: string(v), NotFound: errors.Is(err, cache.ErrNotFound), Panic: errors.Is(err, cache.ErrLoaderPanic),
		Failed: errors.Is(err, cache.ErrLoaderFailed), Timeout: errors.Is(err, cache.ErrLoadTimeout)}
	if err != nil {
		r.Err = err.Error()
	}
	if os.Getenv("WAIT_FRESH") != "" {
		r.SawFresh = xtesting.Eventually(10*time.Second, func() bool {
			v, ok, _ := c.GetInto(nil, "k")
			return ok && string(v) == "fresh"
		})
	}
	sp.Close() // publishes this process's counters
	json.NewEncoder(os.Stdout).Encode(r)
}

// TestLoaderOptionsAcrossProcesses: n processes Get one key at once under
// each option; the loader runs once in the whole cluster, and every
// process gets what the option promises.
func TestLoaderOptionsAcrossProcesses(t *testing.T) {
	const n = 4
	for _, tc := range []struct {
		name   string
		opts   cache.Options
		loader string
		loadMS int
		setup  func(t *testing.T, c *cache.Cache) // the key's state before the children Get it
		fresh  bool                               // every child waits until it reads "fresh"
		check  func(t *testing.T, rs []loadOptsResult, st cache.Stats)
	}{{
		name: "stale served while one process refreshes", opts: cache.Options{StaleFor: time.Minute},
		loader: "fresh", loadMS: 300, setup: func(t *testing.T, c *cache.Cache) { setExpired(t, c, "k", "old") }, fresh: true,
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			for _, r := range rs {
				if r.V != "old" || r.Err != "" || !r.SawFresh {
					t.Fatalf("a child got %+v; want the stale value at once, then the refreshed one", r)
				}
			}
			if st.StaleServes != n || st.Refreshes != 1 || st.Loads != 1 {
				t.Fatalf("%+v; want %d stale serves, 1 refresh, 1 load", st, n)
			}
		},
	}, {
		name: "fail-safe when the loader fails", opts: cache.Options{FailSafeFor: time.Minute},
		loader: "fail", loadMS: 200, setup: func(t *testing.T, c *cache.Cache) { setExpired(t, c, "k", "old") },
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			for _, r := range rs {
				if r.V != "old" || r.Err != "" {
					t.Fatalf("a child got %+v; want the kept value in place of the error", r)
				}
			}
			if st.FailSafeServes != n || st.LoadErrors != 1 {
				t.Fatalf("%+v; want %d fail-safe serves and 1 failed load", st, n)
			}
		},
	}, {
		name: "hard timeout", opts: cache.Options{HardTimeout: 100 * time.Millisecond},
		loader: "fresh", loadMS: 3000,
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			for _, r := range rs {
				if !r.Timeout {
					t.Fatalf("a child got %+v; want ErrLoadTimeout", r)
				}
			}
		},
	}, {
		name: "refresh ahead loads once before expiry", opts: cache.Options{Expire: 30 * time.Second, RefreshAhead: 0.99},
		loader: "fresh", loadMS: 200, fresh: true,
		setup: func(t *testing.T, c *cache.Cache) {
			mustSet(t, c, "k", "old")
			time.Sleep(400 * time.Millisecond) // 300 ms into the life: in the window
		},
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			for _, r := range rs {
				if r.V != "old" || r.Err != "" || !r.SawFresh {
					t.Fatalf("a child got %+v; want the current value, then the refreshed one", r)
				}
			}
			if st.Refreshes != 1 || st.Loads != 1 || st.Misses != 0 {
				t.Fatalf("%+v; want 1 refresh, 1 load, no miss", st)
			}
		},
	}, {
		name: "negative caching stops the loader", opts: cache.Options{NotFoundExpire: time.Minute},
		loader: "notfound", loadMS: 200,
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			for _, r := range rs {
				if !r.NotFound {
					t.Fatalf("a child got %+v; want ErrNotFound", r)
				}
			}
			if st.NegativeHits != n-1 {
				t.Fatalf("%+v; want %d negative hits (every process but the loader's)", st, n-1)
			}
		},
	}, {
		name: "without negative caching the waiters get the loader's not found", opts: cache.Options{},
		loader: "notfound", loadMS: 200,
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			for _, r := range rs {
				if !r.NotFound || r.Failed || !strings.Contains(r.Err, "no row") {
					t.Fatalf("a child got %+v; want ErrNotFound with the loader's text", r)
				}
			}
			if st.Loads+st.LoadErrors != 1 {
				t.Fatalf("%+v; want the loader run once", st)
			}
		},
	}, {
		name: "a panicking loader releases its load", opts: cache.Options{},
		loader: "panic", loadMS: 200,
		check: func(t *testing.T, rs []loadOptsResult, st cache.Stats) {
			panics := 0
			for _, r := range rs {
				switch {
				case r.Panic:
					panics++
				case !r.Failed || !strings.Contains(r.Err, "boom"):
					t.Fatalf("a child got %+v; want ErrLoaderFailed with the panic's text", r)
				}
			}
			if panics != 1 {
				t.Fatalf("%d children got ErrLoaderPanic; want the loader's one", panics)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			a, sp := newArenaSpace(t, 4<<20)
			c, err := sp.Use("opts", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			off, _, _ := a.Region(context.Background(), "once", 64, nil)
			runs := shm.Ptr[atomic.Uint64](a, off)
			start := shm.Ptr[atomic.Uint64](a, off+8)
			ready := shm.Ptr[atomic.Uint64](a, off+16)
			if tc.setup != nil {
				tc.setup(t, c)
			}
			before := c.Stats()
			js, _ := json.Marshal(tc.opts)
			env := []string{"OPTS=" + string(js), "LOADER=" + tc.loader, "LOAD_MS=" + strconv.Itoa(tc.loadMS)}
			env = append(env, "N="+strconv.Itoa(n))
			if tc.fresh { // the children are served the current value, then wait for the refreshed one
				env = append(env, "WAIT_FRESH=1", "WAIT_SERVED=1")
			}
			var cmds []*exec.Cmd
			var outs []*os.File
			for range n {
				cmd := xtesting.Command(t, "loadopts", []*os.File{a.File()}, env...)
				f, err := os.CreateTemp(t.TempDir(), "out")
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stdout = f
				xtesting.Start(t, cmd)
				cmds, outs = append(cmds, cmd), append(outs, f)
			}
			if !xtesting.Eventually(10*time.Second, func() bool { return ready.Load() == n }) {
				t.Fatal("children never got ready")
			}
			start.Store(1)
			var rs []loadOptsResult
			for i, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("child %d: %v", i, err)
				}
				outs[i].Seek(0, 0)
				var r loadOptsResult
				if err := json.NewDecoder(outs[i]).Decode(&r); err != nil {
					t.Fatalf("child %d: %v", i, err)
				}
				rs = append(rs, r)
			}
			if runs.Load() != 1 {
				t.Fatalf("the loader ran %d times across %d processes; want 1 (results %+v)", runs.Load(), n, rs)
			}
			st := c.Stats()
			st.Hits -= before.Hits
			st.Misses -= before.Misses
			tc.check(t, rs, st)
			if err := sp.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
