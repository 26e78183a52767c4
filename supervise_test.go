package cluster2_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// wait is the bound of every wait in these tests: long enough never to fail
// on a slow machine, short enough to fail a hang.

func TestKill9WorkerIsReplaced(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	victim := tc.AnyActive()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ok := xtesting.Eventually(wait, func() bool {
		now := tc.ActivePids()
		return len(now) == 2 && !now[victim]
	})
	if !ok {
		t.Fatalf("killed worker %d not replaced: workers %+v", victim, tc.Workers())
	}
	// The cluster keeps serving, from the new worker too.
	if !tc.ServedByAll(tc.ActivePids()) {
		t.Fatalf("the cluster does not serve from both workers after the replacement")
	}
	if r, _ := tc.Get("/"); !r.Nonblock {
		t.Errorf("shared socket in blocking mode after a respawn")
	}
	if ev := tc.events(); !slices.Contains(ev, "worker-"+strconv.Itoa(victim)+"-died") {
		t.Errorf("events %v; want worker-%d-died", ev, victim)
	}
	// The dead worker's arena slot was released (its locks with it): the
	// process table holds the master and the live workers only.
	var slots []shm.SlotInfo
	if err := tc.Control("/slots", &slots); err != nil {
		t.Fatal(err)
	}
	live := tc.ActivePids()
	for _, s := range slots {
		if s.Pid == victim || (s.Slot != 0 && !live[s.Pid]) {
			t.Errorf("arena slot %d held by pid %d; want the master or a live worker (%v)", s.Slot, s.Pid, live)
		}
	}
}

func TestSIGTERMStopsEveryProcess(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvStopTO+"=10s")
	pids := tc.ActivePids()
	// A request in flight when the stop begins is served to the end.
	inflight := make(chan error, 1)
	go func() { _, err := tc.Get("/slow?ms=500"); inflight <- err }()
	time.Sleep(100 * time.Millisecond)
	tc.Cmd.Process.Signal(syscall.SIGTERM)
	if err := <-inflight; err != nil {
		t.Errorf("request in flight during the stop: %v; want served", err)
	}
	if !tc.WaitExit(15 * time.Second) {
		t.Fatalf("master still running 15 s after SIGTERM (StopTimeout 10 s)")
	}
	if tc.Cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("master exit: %v; want 0", tc.Cmd.ProcessState)
	}
	for pid := range pids {
		if clustertest.Alive(pid) {
			t.Errorf("worker %d still alive after the master stopped", pid)
		}
	}
}

func TestSecondSignalStopsAtOnce(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvStopTO+"=5m")
	pids := tc.ActivePids()
	// A request that would hold the graceful stop for a minute.
	go tc.Get("/slow?ms=60000")
	time.Sleep(100 * time.Millisecond)
	tc.Cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	tc.Cmd.Process.Signal(syscall.SIGINT)
	if !tc.WaitExit(wait) {
		t.Fatalf("master still running after a second signal")
	}
	for pid := range pids {
		if !xtesting.Eventually(wait, func() bool { return !clustertest.Alive(pid) }) {
			t.Errorf("worker %d still alive", pid)
		}
	}
}

func TestMasterKilledWorkersExit(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	pids := tc.ActivePids()
	start := time.Now()
	tc.Cmd.Process.Signal(syscall.SIGKILL)
	// The design bound is one second; the wait allows for a loaded machine.
	ok := xtesting.Eventually(10*time.Second, func() bool {
		for pid := range pids {
			if clustertest.Alive(pid) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("workers %v still alive after their master was killed", pids)
	}
	t.Logf("workers gone %v after the master's kill -9", time.Since(start).Round(time.Millisecond))
}

func TestWorkerSIGTERMDrainsAndIsReplaced(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	victim := tc.AnyActive()
	syscall.Kill(victim, syscall.SIGTERM)
	ok := xtesting.Eventually(wait, func() bool {
		now := tc.ActivePids()
		return !clustertest.Alive(victim) && len(now) == 2 && !now[victim]
	})
	if !ok {
		t.Fatalf("worker %d did not exit and get replaced after SIGTERM: %+v", victim, tc.Workers())
	}
}

func TestPauseResume(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	p := tc.AnyActive()
	if err := tc.Control("/pause?pid="+strconv.Itoa(p), nil); err != nil {
		t.Fatal(err)
	}
	if seen := tc.SeenPids(30); seen[p] != 0 || len(seen) != 1 {
		t.Fatalf("paused worker %d served: %v", p, seen)
	}
	if err := tc.Control("/resume?pid="+strconv.Itoa(p), nil); err != nil {
		t.Fatal(err)
	}
	ok := xtesting.Eventually(wait, func() bool { return tc.SeenPids(20)[p] > 0 })
	if !ok {
		t.Fatalf("resumed worker %d does not serve", p)
	}
}

func TestRollingRestartUnderLoadLosesNothing(t *testing.T) {
	for _, keepAlive := range []bool{true, false} {
		name := "new-connection-per-request"
		if keepAlive {
			name = "keep-alive"
		}
		t.Run(name, func(t *testing.T) {
			tc := startCluster(t, clustertest.EnvWorkers+"=2")
			masterPid := tc.Cmd.Process.Pid
			before := tc.ActivePids()
			stop := make(chan struct{})
			start := time.Now()
			n, wg := tc.Load(16, keepAlive, stop)
			time.Sleep(time.Second)
			tc.Cmd.Process.Signal(syscall.SIGHUP)
			// Wait until every worker was replaced, then keep the load on
			// (about 5 s of load in all).
			ok := xtesting.Eventually(wait, func() bool {
				now := tc.ActivePids()
				if len(now) != 2 {
					return false
				}
				for pid := range now {
					if before[pid] {
						return false
					}
				}
				return true
			})
			time.Sleep(max(time.Second, loadFor()-time.Since(start)))
			close(stop)
			wg.Wait()
			if !ok {
				t.Fatalf("rolling restart did not replace %v: %+v", before, tc.Workers())
			}
			t.Logf("%s: %d requests, %d failed during a rolling restart", name, n.Done.Load(), n.Failed.Load())
			if n.Failed.Load() != 0 {
				t.Errorf("%d failed requests during the rolling restart; want 0; first: %s", n.Failed.Load(), strings.Join(n.Errs(), " | "))
			}
			if tc.Cmd.Process.Pid != masterPid || !clustertest.Alive(masterPid) {
				t.Errorf("the master changed or died")
			}
			if r, err := tc.Get("/"); err != nil || !r.Nonblock {
				t.Errorf("after the rolling restart: %v, shared socket non-blocking %v; want true", err, r.Nonblock)
			}
		})
	}
}

func TestSuccessorFailingWarmUpLeavesOldServing(t *testing.T) {
	for _, how := range []string{clustertest.EnvWarmFail, clustertest.EnvWarmCrash} {
		t.Run(how, func(t *testing.T) { testSuccessorFailing(t, how) })
	}
}

func testSuccessorFailing(t *testing.T, how string) {
	flag := filepath.Join(t.TempDir(), "fail")
	tc := startCluster(t, clustertest.EnvWorkers+"=1", how+"="+flag, clustertest.EnvRetries+"=1")
	p := tc.failReplacement(flag)
	if n := tc.SeenPids(10); n[p] != 10 {
		t.Fatalf("requests served by %v; want all by the old worker %d", n, p)
	}
	if ws := tc.Workers(); len(ws) != 1 || ws[0].Pid != p || ws[0].State.String() != "active" {
		t.Fatalf("workers %+v; want only the old worker %d, active", ws, p)
	}
	if n := strings.Count(strings.Join(tc.events(), " "), "-forked"); n != 3 {
		t.Errorf("%d workers forked; want 3 (the old one, one try and one retry): %v", n, tc.events())
	}
	if n := strings.Count(strings.Join(tc.events(), " "), "-warmup-failure"); how == clustertest.EnvWarmFail && n != 2 {
		t.Errorf("%d warm-up failures reported; want 2 (one try and one retry)", n)
	}
}

// TestSuccessorNeverListeningIsKilled: a successor that never listens (its
// warm-up hangs) is killed at ReplaceTimeout and the old worker keeps
// serving. ReplaceTimeout bounds the initial worker's start too, with no
// retry here: 3 s, not less (1 s failed once at a load of 25).
func TestSuccessorNeverListeningIsKilled(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "hang")
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvWarmHang+"="+flag, clustertest.EnvRetries+"=-1", clustertest.EnvReplaceTO+"=3s")
	p := tc.failReplacement(flag)
	ok := xtesting.Eventually(wait, func() bool { ws := tc.Workers(); return len(ws) == 1 && ws[0].Pid == p })
	if !ok {
		t.Fatalf("workers %+v; want only the old worker %d", tc.Workers(), p)
	}
	if n := tc.SeenPids(5); n[p] != 5 {
		t.Fatalf("requests served by %v; want the old worker %d", n, p)
	}
}

func TestOldWorkerNeverExitingIsKilled(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvStuckOnStop+"=1", clustertest.EnvReplaceTO+"=3s")
	p := tc.AnyActive()
	if err := tc.Control("/replace?pid="+strconv.Itoa(p), nil); err != nil {
		t.Fatal(err)
	}
	died := "worker-" + strconv.Itoa(p) + "-died"
	ok := xtesting.Eventually(wait, func() bool { return slices.Contains(tc.events(), died) })
	if !ok || clustertest.Alive(p) {
		t.Fatalf("old worker %d not reaped: events %v", p, tc.events())
	}
	ev := strings.Join(tc.events(), " ")
	for _, want := range []string{"-old", "-sigterm", "-sigkill", "worker-" + strconv.Itoa(p) + "-died"} {
		if !strings.Contains(ev, want) {
			t.Errorf("events %s; want %s", ev, want)
		}
	}
	if seen := tc.SeenPids(5); seen[p] != 0 || len(seen) != 1 {
		t.Errorf("served by %v; want the successor only", seen)
	}
}

func TestDeathQueueIgnoresDuplicates(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	p := tc.AnyActive()
	for range 3 {
		tc.Control("/replace?pid="+strconv.Itoa(p), nil)
	}
	ok := xtesting.Eventually(wait, func() bool { return !clustertest.Alive(p) && len(tc.ActivePids()) == 2 })
	if !ok {
		t.Fatalf("worker %d not replaced: %+v", p, tc.Workers())
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would now be running
	forked := strings.Count(strings.Join(tc.events(), " "), "-forked")
	if forked != 3 {
		t.Errorf("%d workers forked; want 3 (2 initial + 1 successor): %v", forked, tc.events())
	}
}

func hasSuffix(events []string, suffix string) bool {
	return slices.ContainsFunc(events, func(e string) bool { return strings.HasSuffix(e, suffix) })
}

func TestCrashLoopBacksOffAndRecovers(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "crash")
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvWarmCrash+"="+flag)
	p := tc.AnyActive()
	os.WriteFile(flag, nil, 0o644) // every new worker now crashes in warm-up
	syscall.Kill(p, syscall.SIGKILL)
	forked := func() int { return strings.Count(strings.Join(tc.events(), " "), "-forked") }
	if !xtesting.Eventually(wait, func() bool { return forked() >= 5 }) {
		t.Fatalf("the master stopped replacing a crashing worker: %v", tc.events())
	}
	os.Remove(flag)
	if !xtesting.Eventually(wait, func() bool { return len(tc.ActivePids()) == 1 }) {
		t.Fatalf("no active worker after the crash loop ended: %+v", tc.Workers())
	}
	if _, err := tc.Get("/"); err != nil {
		t.Fatalf("cluster not serving after the crash loop: %v", err)
	}
}

func TestInitialWarmUpFailureIsAnError(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	os.WriteFile(flag, nil, 0o644)
	r := clustertest.Run(t, wait, "cluster", clustertest.EnvWorkers+"=2", clustertest.EnvWarmFail+"="+flag, clustertest.EnvRetries+"=1")
	if r.Code != 3 {
		t.Fatalf("master: exit %d; want exit 3 after Listen failed", r.Code)
	}
	if !strings.Contains(r.Stdout, "LISTEN-ERROR") || !strings.Contains(r.Stdout, "the cluster failed to start") {
		t.Fatalf("master printed %q; want Listen's start failure", r.Stdout)
	}
}

// TestDeathQueueIsFIFOOneAtATime queues two workers: the second replacement
// starts only once the first old worker is gone, and each old worker is
// dismissed only once its successor listens.
func TestDeathQueueIsFIFOOneAtATime(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2")
	ws := tc.Workers()
	a, b := ws[0].Pid, ws[1].Pid
	tc.Control("/replace?pid="+strconv.Itoa(a), nil)
	tc.Control("/replace?pid="+strconv.Itoa(b), nil)
	dead := func(pid int) string { return "worker-" + strconv.Itoa(pid) + "-died" }
	if !xtesting.Eventually(wait, func() bool {
		ev := tc.events()
		return slices.Contains(ev, dead(a)) && slices.Contains(ev, dead(b)) && len(tc.ActivePids()) == 2
	}) {
		t.Fatalf("both workers not replaced: %v", tc.events())
	}
	ev := tc.events()
	at := func(name string) int {
		i := slices.Index(ev, name)
		if i < 0 {
			t.Fatalf("no event %s in %v", name, ev)
		}
		return i
	}
	// Successors are the workers forked after "up", in order.
	var succ []int
	for _, e := range ev[at("up"):] {
		if pid, ok := strings.CutSuffix(strings.TrimPrefix(e, "worker-"), "-forked"); ok {
			n, _ := strconv.Atoi(pid)
			succ = append(succ, n)
		}
	}
	if len(succ) != 2 {
		t.Fatalf("successors %v; want 2: %v", succ, ev)
	}
	ev1 := func(pid int, what string) int { return at("worker-" + strconv.Itoa(pid) + "-" + what) }
	order := []int{
		ev1(succ[0], "listening"), ev1(a, "old"), ev1(a, "died"),
		ev1(succ[1], "forked"), ev1(succ[1], "listening"), ev1(b, "old"), ev1(b, "died"),
	}
	if !slices.IsSorted(order) {
		t.Fatalf("death queue out of order (want successor A listening < A old < A died < successor B forked < listening < B old < B died): %v", ev)
	}
}

// loadFor is how long the rolling-restart tests keep their load on.
func loadFor() time.Duration {
	if testing.Short() {
		return 2 * time.Second
	}
	return 5 * time.Second
}

// failReplacement creates flag (which makes every new worker fail), asks for
// the replacement of an active worker, waits for the replace-failure event
// and returns the old worker's pid.
func (tc *testCluster) failReplacement(flag string) int {
	tc.t.Helper()
	p := tc.AnyActive()
	os.WriteFile(flag, nil, 0o644)
	if err := tc.Control("/replace?pid="+strconv.Itoa(p), nil); err != nil {
		tc.t.Fatal(err)
	}
	if !xtesting.Eventually(wait, func() bool { return hasSuffix(tc.events(), "-replace-failure") }) {
		tc.t.Fatalf("no replace-failure event: %v", tc.events())
	}
	return p
}

// TestWorkerSIGTERMDuringWarmUp: a stop ends a warm-up at once (here one that
// would hang for a minute), and the worker never joins the socket.
func TestWorkerSIGTERMDuringWarmUp(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "hang")
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvWarmHang+"="+flag, clustertest.EnvReplaceTO+"=60s")
	p := tc.AnyActive()
	os.WriteFile(flag, nil, 0o644)
	syscall.Kill(p, syscall.SIGKILL) // its replacement hangs in warm-up
	var warming int
	if !xtesting.Eventually(wait, func() bool {
		for _, w := range tc.Workers() {
			if w.State.String() == "warming" {
				warming = w.Pid
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no warming worker: %+v", tc.Workers())
	}
	syscall.Kill(warming, syscall.SIGTERM)
	died := "worker-" + strconv.Itoa(warming) + "-died"
	if !xtesting.Eventually(wait, func() bool { return slices.Contains(tc.events(), died) }) {
		t.Fatalf("warming worker %d still running after SIGTERM: %v", warming, tc.events())
	}
	if slices.Contains(tc.events(), "worker-"+strconv.Itoa(warming)+"-listening") {
		t.Errorf("worker %d joined the socket after SIGTERM", warming)
	}
	os.Remove(flag)
	if !xtesting.Eventually(wait, func() bool { return len(tc.ActivePids()) == 1 }) {
		t.Fatalf("no active worker after the warm-up ended: %+v", tc.Workers())
	}
}
