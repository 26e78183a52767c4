package master_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/worker"
	"golang.org/x/sys/unix"
)

// The workers of these tests are this test binary re-executed through the
// master's process seam (Config.Exe, Args and Env): real processes running
// the real worker package, whose behaviour per spawn a script names
// (envScript: one word per spawn, in spawn order, the last one repeating):
//
//	ok        warm up and serve until told to drain
//	warmfail  fail the warm-up (the worker reports it and exits)
//	crash     exit with status 2 before reporting anything
//	hold      warm up once envDir/hold is gone, then as ok
//
// Spawns are counted across processes in envDir (os.Mkdir is atomic).
const (
	envScript     = "MASTERTEST_SCRIPT"
	envDir        = "MASTERTEST_DIR"
	envReqTimeout = "MASTERTEST_REQUEST_TIMEOUT" // the workers' Server.RequestTimeout (they serve GET /hang, which never returns)
)

func TestMain(m *testing.M) {
	if worker.IsWorker() {
		os.Exit(scriptedWorker())
	}
	if id, _ := proc.Self(); id.Role == proc.RoleCacheManager {
		os.Exit(auxProcess(id)) // aux_test.go
	}
	os.Exit(m.Run())
}

// scriptedWorker runs this process as a worker the way the script says, and
// returns its exit status.
func scriptedWorker() int {
	script := strings.Split(os.Getenv(envScript), ",")
	n := 0
	for ; os.Mkdir(filepath.Join(os.Getenv(envDir), "spawn-"+strconv.Itoa(n)), 0o700) != nil; n++ {
		if n > 1000 {
			return 4
		}
	}
	what := script[min(n, len(script)-1)]
	mux := http.NewServeMux()
	// GET / answers clustertest.Reply's shape; GET /hang never returns,
	// whatever its context says.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, `{"pid":%d}`, os.Getpid()) })
	mux.HandleFunc("/hang", func(http.ResponseWriter, *http.Request) { select {} })
	reqTimeout, _ := time.ParseDuration(os.Getenv(envReqTimeout))
	cfg := worker.Config{
		Handler:           mux,
		HeartbeatInterval: 100 * time.Millisecond,
		ReplaceTimeout:    20 * time.Second,
		Server:            worker.ServerConfig{RequestTimeout: reqTimeout},
	}
	switch what {
	case "ok":
	case "warmfail":
		cfg.WarmUp = func(context.Context, string) error { return errors.New("scripted warm-up failure") }
	case "crash":
		return 2
	case "hold":
		cfg.WarmUp = func(ctx context.Context, _ string) error {
			for ctx.Err() == nil {
				if _, err := os.Stat(filepath.Join(os.Getenv(envDir), "hold")); err != nil {
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
			return ctx.Err()
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown script word %q\n", what)
		return 5
	}
	w, err := worker.Run(context.Background(), cfg)
	if err != nil {
		return 1
	}
	w.Wait()
	return 0
}

// recorder keeps every event the master makes, in the order OnEvent is
// called, and names the workers by the order of their forked events: "a" is
// the first worker forked, "b" the second, …
type recorder struct {
	mu     sync.Mutex
	events []master.Event
	alias  map[int]string
	change chan struct{}
}

func newRecorder() *recorder {
	return &recorder{alias: map[int]string{}, change: make(chan struct{}, 1)}
}

func (r *recorder) onEvent(e master.Event) {
	r.mu.Lock()
	if e.Kind == master.EventForked {
		r.alias[e.Pid] = string(rune('a' + len(r.alias)))
	}
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.change <- struct{}{}:
	default:
	}
}

// trace returns the events so far as "who:kind" (cluster events: "kind").
func (r *recorder) trace() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.Kind.String()
		if e.Pid != 0 {
			out[i] = r.alias[e.Pid] + ":" + out[i]
		}
	}
	return out
}

// pid returns the pid of the worker named who.
func (r *recorder) pid(who string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, a := range r.alias {
		if a == who {
			return pid
		}
	}
	return 0
}

// subsequence reports whether want occurs in got in order (not necessarily
// adjacent), and how much of it did.
func subsequence(got, want []string) (bool, int) {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want), i
}

// waitFor waits until want occurred in order. The bound only ends a test
// whose events never come; it judges no timing.
func (r *recorder) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		if ok, _ := subsequence(r.trace(), want); ok {
			return
		}
		select {
		case <-r.change:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			_, n := subsequence(r.trace(), want)
			t.Fatalf("events never matched: want %v in order; matched up to %v; got %v", want, want[:n], r.trace())
		}
	}
}

// count returns how many events are named ev ("who:kind" or "kind").
func (r *recorder) count(ev string) int {
	n := 0
	for _, g := range r.trace() {
		if g == ev {
			n++
		}
	}
	return n
}

// states returns the workers as "who:state", by slot.
func states(r *recorder, m *master.Master) []string {
	var out []string
	for _, w := range m.Workers() {
		r.mu.Lock()
		out = append(out, r.alias[w.Pid]+":"+w.State.String())
		r.mu.Unlock()
	}
	return out
}

// listenerFile returns a loopback listening socket as a file to hand to the
// workers (os.NewFile of a non-blocking dup, as cluster2 makes it).
func listenerFile(t *testing.T) *os.File {
	t.Helper()
	f, _ := listenerAt(t)
	return f
}

// listenerAt is listenerFile with the socket's address.
func listenerAt(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var dup int
	var derr error
	rc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if derr != nil {
		t.Fatal(derr)
	}
	f := os.NewFile(uintptr(dup), "listener")
	t.Cleanup(func() { f.Close() })
	return f, ln.Addr().String()
}

// lifecycle is one row of TestLifecycle: a cluster of workers whose spawns
// follow script, an action on the running master, and the events that must
// follow in order and the workers' states at the end.
type lifecycle struct {
	name    string
	workers int
	script  string
	retries int // ReplaceRetries
	// startErr, when set, is what Start must fail with (both errors.Is).
	startErr []error
	act      func(t *testing.T, r *recorder, m *master.Master)
	want     []string // events in order, "who:kind" or "kind"
	states   []string // Workers() at the end, "who:state" by slot
	once     []string // events that must occur exactly once
}

func TestLifecycle(t *testing.T) {
	rows := []lifecycle{{
		name: "start", workers: 1, script: "ok",
		want:   []string{"a:forked", "a:warming", "a:warmup", "a:listening", "up"},
		states: []string{"a:active"},
	}, {
		name: "start retries a warm-up failure", workers: 1, script: "warmfail,ok", retries: 1,
		want:   []string{"a:forked", "a:warming", "a:warmup-failure", "a:died", "b:forked", "b:listening", "up"},
		states: []string{"b:active"},
	}, {
		name: "start retries a crash", workers: 1, script: "crash,ok", retries: 1,
		want:   []string{"a:forked", "a:died", "b:forked", "b:listening", "up"},
		states: []string{"b:active"},
	}, {
		name: "start fails when no worker warms up", workers: 1, script: "warmfail", retries: -1,
		startErr: []error{master.ErrStartFailed, master.ErrWarmUp},
		want:     []string{"a:forked", "a:warmup-failure", "a:died"},
	}, {
		name: "a crashed worker is respawned in its slot", workers: 1, script: "ok",
		act: func(t *testing.T, r *recorder, m *master.Master) {
			syscall.Kill(r.pid("a"), syscall.SIGKILL)
			r.waitFor(t, "a:died", "b:forked", "b:listening")
		},
		want:   []string{"up", "a:died", "b:forked", "b:warming", "b:warmup", "b:listening"},
		states: []string{"b:active"},
	}, {
		name: "replace starts the successor first", workers: 1, script: "ok",
		act: func(t *testing.T, r *recorder, m *master.Master) {
			if err := m.Replace(r.pid("a")); err != nil {
				t.Fatal(err)
			}
			r.waitFor(t, "a:died")
		},
		want:   []string{"up", "b:forked", "b:listening", "a:old", "a:draining", "a:died"},
		states: []string{"b:active"},
		once:   []string{"b:forked"},
	}, {
		name: "a failed successor is killed and the old worker keeps serving", workers: 1, script: "ok,warmfail", retries: -1,
		act: func(t *testing.T, r *recorder, m *master.Master) {
			m.Replace(r.pid("a"))
			r.waitFor(t, "a:replace-failure")
		},
		want:   []string{"up", "b:forked", "b:warmup-failure", "b:died", "a:replace-failure"},
		states: []string{"a:active"},
	}, {
		name: "the death queue replaces one at a time, in order, once per pid", workers: 2, script: "ok",
		act: func(t *testing.T, r *recorder, m *master.Master) {
			for _, who := range []string{"a", "b", "a"} {
				if err := m.Replace(r.pid(who)); err != nil {
					t.Fatal(err)
				}
			}
			if q := m.DeathQueue(); len(q) != 2 {
				t.Errorf("DeathQueue %v after replacing a, b and a again: want a and b once each", q)
			}
			r.waitFor(t, "b:died")
		},
		want: []string{"up", "c:forked", "c:listening", "a:old", "a:died", "d:forked", "d:listening", "b:old", "b:died"},
		// Slots are taken lowest first: c took slot 3 (a's and b's were
		// busy), d took slot 1, freed by a.
		states: []string{"d:active", "c:active"},
		once:   []string{"c:forked", "d:forked", "a:old", "b:old"},
	}, {
		name: "a stopped worker told to drain is killed as unresponsive", workers: 1, script: "ok",
		act: func(t *testing.T, r *recorder, m *master.Master) {
			a := r.pid("a")
			syscall.Kill(a, syscall.SIGSTOP)
			defer syscall.Kill(a, syscall.SIGCONT)
			m.Replace(a)
			r.waitFor(t, "a:died")
		},
		want:   []string{"up", "b:listening", "a:old", "a:unresponsive", "a:sigkill", "a:died"},
		states: []string{"b:active"},
	}, {
		name: "pause and resume", workers: 1, script: "ok",
		act: func(t *testing.T, r *recorder, m *master.Master) {
			ctx := context.Background()
			if err := m.Pause(ctx, r.pid("a")); err != nil {
				t.Fatal(err)
			}
			if got := states(r, m); !slices.Equal(got, []string{"a:paused"}) {
				t.Errorf("after Pause: %v", got)
			}
			if err := m.Replace(r.pid("a")); !errors.Is(err, master.ErrWrongState) && err != nil {
				t.Errorf("Replace of a paused worker: %v", err)
			}
			if err := m.Resume(ctx, r.pid("a")); err != nil {
				t.Fatal(err)
			}
		},
		want:   []string{"up", "a:paused", "a:resumed"},
		states: []string{"a:active"},
	}}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			runLifecycle(t, row)
		})
	}
}

func runLifecycle(t *testing.T, row lifecycle) {
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 16})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	cfg := master.Config{
		Workers: row.workers, Listener: listenerFile(t), Arena: a,
		Exe: os.Args[0], Args: []string{os.Args[0], "-test.run=^$"},
		Env:               append(os.Environ(), envScript+"="+row.script, envDir+"="+t.TempDir()),
		HeartbeatInterval: 100 * time.Millisecond, ReplaceTimeout: 20 * time.Second, ReplaceRetries: row.retries,
		StopTimeout: 20 * time.Second, OnEvent: r.onEvent,
	}
	m, err := master.Start(context.Background(), cfg)
	if err == nil {
		err = m.WaitUp(context.Background())
	}
	if row.startErr != nil {
		for _, want := range row.startErr {
			if !errors.Is(err, want) {
				t.Errorf("Start: %v, want an error wrapping %v", err, want)
			}
		}
		if err == nil {
			m.Stop(context.Background())
		}
		a.Close()
		if r.count("up") != 0 {
			t.Errorf("a failed start emitted up: %v", r.trace())
		}
	} else {
		if err != nil {
			a.Close()
			t.Fatalf("Start: %v (events %v)", err, r.trace())
		}
		stopAtEnd(t, m, a)
		if row.act != nil {
			row.act(t, r, m)
		}
	}
	r.waitFor(t, row.want...)
	for _, ev := range row.once {
		if n := r.count(ev); n != 1 {
			t.Errorf("%s happened %d times, want once: %v", ev, n, r.trace())
		}
	}
	if row.states != nil && m != nil {
		// The master emits a state's events before it applies the state
		// (see watch.go's onState): Workers may lag the last event a moment.
		// The bound only ends a test whose states never come.
		got := states(r, m)
		for deadline := time.Now().Add(10 * time.Second); !slices.Equal(got, row.states) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			got = states(r, m)
		}
		if !slices.Equal(got, row.states) {
			t.Errorf("workers at the end: %v, want %v (events %v)", got, row.states, r.trace())
		}
	}
}

// stopAtEnd stops m (bounded) and closes its arena when the test ends.
func stopAtEnd(t *testing.T, m *master.Master, a *shm.Arena) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m.Stop(ctx)
		a.Close()
	})
}

// TestStopDrainsEveryWorker: a stop goes down first, then every worker
// drains (its draining event comes even when the drain is so short that the
// master's watcher saw it only stopped) and dies, then Done closes and
// Workers is empty.
func TestStopDrainsEveryWorker(t *testing.T) {
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := newRecorder()
	m, err := master.Start(context.Background(), master.Config{
		Workers: 2, Listener: listenerFile(t), Arena: a, Exe: os.Args[0], Args: []string{os.Args[0], "-test.run=^$"},
		Env:               append(os.Environ(), envScript+"=ok", envDir+"="+t.TempDir()),
		HeartbeatInterval: 100 * time.Millisecond, ReplaceTimeout: 20 * time.Second, StopTimeout: 20 * time.Second,
		OnEvent: r.onEvent,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Stop returned before Done closed")
	}
	for _, want := range [][]string{{"up", "down", "a:draining", "a:died"}, {"up", "down", "b:draining", "b:died"}} {
		if ok, _ := subsequence(r.trace(), want); !ok {
			t.Errorf("want %v in order, got %v", want, r.trace())
		}
	}
	if w := m.Workers(); len(w) != 0 {
		t.Errorf("Workers after Stop: %v", w)
	}
	if m.Up() {
		t.Error("Up after Stop")
	}
}
