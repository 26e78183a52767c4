package cluster2_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// scaling is the master's Scaling, through the control server.
func (tc *testCluster) scaling() cluster2.Scaling {
	tc.t.Helper()
	var s cluster2.Scaling
	if err := tc.Control("/scaling", &s); err != nil {
		tc.t.Fatalf("scaling: %v", err)
	}
	return s
}

// scaleTo asks the master for n workers and waits for the answer.
func (tc *testCluster) scaleTo(n int) error {
	return tc.Control("/scale?n="+strconv.Itoa(n), nil)
}

// settled waits until the master keeps n workers, every one of them active
// and no other process (old, draining) is left.
func (tc *testCluster) settled(n int) bool {
	return xtesting.Eventually(wait, func() bool {
		ws := tc.Workers()
		if len(ws) != n || tc.scaling().Workers != n {
			time.Sleep(50 * time.Millisecond)
			return false
		}
		for _, w := range ws {
			if w.State.String() != "active" {
				time.Sleep(50 * time.Millisecond)
				return false
			}
		}
		return true
	})
}

// Scale 2 → 4 → 1 under load (keep-alive and new connections): no request
// fails; the new workers serve; the oldest ones go on the scale-down; the
// target, the count and the events say so.
func TestScaleUnderLoadLosesNothing(t *testing.T) {
	// No ShouldKill: a replacement would be one more worker coming and going.
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvMaxWorkers+"=4", clustertest.EnvKeepAll+"=1")
	first := tc.ActivePids()
	stop := make(chan struct{})
	ka, kwg := tc.Load(4, true, stop)
	nc, nwg := tc.Load(4, false, stop)
	time.Sleep(300 * time.Millisecond)
	if err := tc.scaleTo(4); err != nil {
		t.Fatalf("scale to 4: %v", err)
	}
	if s := tc.scaling(); s.Target != 4 || s.Workers != 4 || s.Max != 4 {
		t.Errorf("after Scale(4): %+v; want target 4, workers 4, max 4", s)
	}
	four := tc.ActivePids()
	if len(four) != 4 {
		t.Fatalf("after Scale(4): active %v; want 4", four)
	}
	for pid := range first {
		if !four[pid] {
			t.Errorf("worker %d of the first two is gone after scaling up", pid)
		}
	}
	if !tc.ServedByAll(four) {
		t.Fatalf("not every one of the 4 workers serves")
	}
	if err := tc.scaleTo(1); err != nil {
		t.Fatalf("scale to 1: %v", err)
	}
	// Scale returned once the three drained and exited.
	ws := tc.Workers()
	if len(ws) != 1 || first[ws[0].Pid] {
		t.Errorf("after Scale(1): workers %+v; want one, one of the two newest (the oldest go first)", ws)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	kwg.Wait()
	nwg.Wait()
	for name, n := range map[string]*clustertest.Counts{"keep-alive": ka, "new connections": nc} {
		t.Logf("%s: %d requests, %d failed while scaling 2→4→1", name, n.Done.Load(), n.Failed.Load())
		if n.Failed.Load() != 0 {
			t.Errorf("%s: %d failed requests while scaling; want 0; first: %s", name, n.Failed.Load(), strings.Join(n.Errs(), " | "))
		}
	}
	if s := tc.scaling(); s.Target != 1 || s.Workers != 1 {
		t.Errorf("after Scale(1): %+v; want target 1, workers 1", s)
	}
	ev := tc.events()
	var scales []string
	for _, e := range ev {
		if e == "scale" {
			scales = append(scales, e)
		}
	}
	if len(scales) != 2 {
		t.Errorf("events %v; want two scale events", ev)
	}
	for pid := range first {
		if !slices.Contains(ev, "worker-"+strconv.Itoa(pid)+"-old") || !slices.Contains(ev, "worker-"+strconv.Itoa(pid)+"-draining") {
			t.Errorf("events %v; want worker %d old, then draining (never killed)", ev, pid)
		}
		if slices.Contains(ev, "worker-"+strconv.Itoa(pid)+"-sigkill") || slices.Contains(ev, "worker-"+strconv.Itoa(pid)+"-sigterm") {
			t.Errorf("events %v: worker %d was signalled; want a drain", ev, pid)
		}
	}
}

// Above the ceiling and below 1 are errors that change nothing; SIGTTIN and
// SIGTTOU scale by one; SIGTTOU at one worker is refused.
func TestScaleCeilingAndSignals(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvMaxWorkers+"=2")
	for _, n := range []int{3, 0, -1} {
		err := tc.scaleTo(n)
		if err == nil || !strings.Contains(err.Error(), "409") {
			t.Errorf("Scale(%d): %v; want a refusal", n, err)
		}
		if n == 3 && (err == nil || !strings.Contains(err.Error(), "ceiling is 2")) {
			t.Errorf("Scale(3) above MaxWorkers 2: %v; want the ceiling named", err)
		}
	}
	if s := tc.scaling(); s.Target != 1 || s.Max != 2 {
		t.Fatalf("after refused scales: %+v; want target 1, max 2", s)
	}
	tc.Signal(syscall.SIGTTIN)
	if !tc.settled(2) {
		t.Fatalf("SIGTTIN: %+v, workers %+v; want 2 active", tc.scaling(), tc.Workers())
	}
	tc.Signal(syscall.SIGTTIN) // above the ceiling: refused, logged
	time.Sleep(500 * time.Millisecond)
	if s := tc.scaling(); s.Target != 2 || s.Workers != 2 {
		t.Fatalf("SIGTTIN at the ceiling: %+v; want 2", s)
	}
	tc.Signal(syscall.SIGTTOU)
	if !tc.settled(1) {
		t.Fatalf("SIGTTOU: %+v, workers %+v; want 1 active", tc.scaling(), tc.Workers())
	}
	tc.Signal(syscall.SIGTTOU) // below 1: refused
	time.Sleep(500 * time.Millisecond)
	if s := tc.scaling(); s.Target != 1 || s.Workers != 1 {
		t.Errorf("SIGTTOU at one worker: %+v; want 1", s)
	}
	if r, err := tc.Get("/"); err != nil {
		t.Errorf("GET / after scaling by signals: %v (%+v)", err, r)
	}
}

// A rolling restart after a scale replaces every worker one for one: the
// scaled count stays; a crashed worker is respawned to the target, not to
// Config.Workers.
func TestScaleSurvivesRollingRestartAndCrash(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvMaxWorkers+"=3")
	if err := tc.scaleTo(3); err != nil {
		t.Fatal(err)
	}
	before := tc.ActivePids()
	if err := tc.Control("/rolling", nil); err != nil {
		t.Fatalf("rolling restart: %v", err)
	}
	if !tc.settled(3) {
		t.Fatalf("after the rolling restart: %+v, %+v; want 3 active", tc.scaling(), tc.Workers())
	}
	for pid := range tc.ActivePids() {
		if before[pid] {
			t.Errorf("worker %d not replaced by the rolling restart", pid)
		}
	}
	victim := tc.AnyActive()
	syscall.Kill(victim, syscall.SIGKILL)
	ok := xtesting.Eventually(wait, func() bool {
		now := tc.ActivePids()
		return len(now) == 3 && !now[victim]
	})
	if !ok {
		t.Fatalf("a killed worker was not respawned to the target 3: %+v", tc.Workers())
	}
}

// Scale during a rolling restart waits for it (the death queue is FIFO):
// the restart's successors come first, then the new worker.
func TestScaleDuringRollingRestartQueues(t *testing.T) {
	hang := filepath.Join(t.TempDir(), "hang")
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvMaxWorkers+"=3", clustertest.EnvWarmHang+"="+hang)
	before := tc.ActivePids()
	if err := os.WriteFile(hang, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rolled, scaled := make(chan error, 1), make(chan error, 1)
	go func() { rolled <- tc.Control("/rolling", nil) }()
	if !xtesting.Eventually(wait, func() bool { return len(tc.Workers()) == 3 }) { // the first successor, warming
		t.Fatalf("no successor: %+v", tc.Workers())
	}
	go func() { scaled <- tc.scaleTo(3) }()
	if !xtesting.Eventually(wait, func() bool { return tc.scaling().Target == 3 }) {
		t.Fatalf("target not set: %+v", tc.scaling())
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-scaled:
		t.Fatalf("Scale returned (%v) while the rolling restart's first successor still warms up; want it queued", err)
	default:
	}
	if s := tc.scaling(); s.Workers != 2 {
		t.Fatalf("while queued: %+v; want 2 workers still", s)
	}
	os.Remove(hang)
	for what, ch := range map[string]chan error{"rolling restart": rolled, "scale": scaled} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(wait):
			t.Fatalf("%s did not end", what)
		}
	}
	if !tc.settled(3) {
		t.Fatalf("after both: %+v, %+v; want 3 active", tc.scaling(), tc.Workers())
	}
	for pid := range tc.ActivePids() {
		if before[pid] {
			t.Errorf("worker %d not replaced by the rolling restart", pid)
		}
	}
}

// An in-place upgrade keeps the scaled count (the handover carries the
// target); Scale while the upgrade replaces the workers is refused with
// ErrUpgrading; /status shows the scale.
func TestScaleSurvivesUpgrade(t *testing.T) {
	hang := filepath.Join(t.TempDir(), "hang")
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvMaxWorkers+"=3", clustertest.EnvWarmHang+"="+hang)
	if err := tc.scaleTo(3); err != nil {
		t.Fatal(err)
	}
	before := tc.ActivePids()
	if err := os.WriteFile(hang, nil, 0o600); err != nil { // the next image's successors wait in warm-up
		t.Fatal(err)
	}
	since := time.Now()
	tc.Signal(syscall.SIGUSR2)
	tc.ReadyAgain(wait) // the next image adopted the cluster; it replaces the workers now
	err := tc.scaleTo(2)
	if err == nil || !strings.Contains(err.Error(), "in-place upgrade") {
		t.Errorf("Scale during the upgrade's replacements: %v; want ErrUpgrading", err)
	}
	os.Remove(hang)
	if u, err := tc.WaitUpgrade(since, 2*wait); err != nil || u.State != "done" {
		t.Fatalf("upgrade: %+v, %v; want done", u, err)
	}
	if s := tc.scaling(); s.Target != 3 || s.Max != 3 {
		t.Errorf("after the upgrade: %+v; want target 3, max 3", s)
	}
	if !tc.settled(3) {
		t.Fatalf("after the upgrade: %+v, %+v; want 3 active", tc.scaling(), tc.Workers())
	}
	for pid := range tc.ActivePids() {
		if before[pid] {
			t.Errorf("worker %d survived the upgrade", pid)
		}
	}
	resp, err := http.Get("http://" + tc.Mon + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]json.RawMessage // status name → pid → value
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	var sc map[string]cluster2.Scaling
	if err == nil {
		err = json.Unmarshal(st[cluster2.StatusScale], &sc)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s := sc[strconv.Itoa(tc.Pid())]; s.Target != 3 || s.Workers != 3 || s.Max != 3 {
		t.Errorf("/status's scale: %+v; want target 3, workers 3, max 3", sc)
	}
}

// The arena bounds the ceiling too: a 2 MiB arena has room for the event
// rings (512 KiB a worker slot) of three workers, one of them a successor's:
// MaxWorkers 4 is lowered to 2, and Scale(3) names that ceiling.
func TestScaleCeilingBoundByTheArena(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvMaxWorkers+"=4", clustertest.EnvArenaSize+"="+strconv.Itoa(2<<20))
	if s := tc.scaling(); s.Max != 2 {
		t.Fatalf("2 MiB arena: %+v; want max 2", s)
	}
	if err := tc.scaleTo(3); err == nil || !strings.Contains(err.Error(), "ceiling is 2") {
		t.Fatalf("Scale(3): %v; want the ceiling 2 named", err)
	}
	if err := tc.scaleTo(2); err != nil {
		t.Fatalf("Scale(2): %v", err)
	}
	if err := tc.Control("/rolling", nil); err != nil { // a successor's rings fit too
		t.Fatalf("rolling restart at the ceiling: %v", err)
	}
	if !tc.settled(2) {
		t.Fatalf("%+v, %+v; want 2 active", tc.scaling(), tc.Workers())
	}
}

// A scale tells the service manager the new count (STATUS=).
func TestScaleNotifies(t *testing.T) {
	path, ch := notifySocket(t)
	tc := startCluster(t, clustertest.EnvWorkers+"=1", clustertest.EnvMaxWorkers+"=2", clustertest.EnvNoWarmUp+"=1", "NOTIFY_SOCKET="+path)
	expectFrom(t, ch, tc.Pid(), "start", "READY=1", "STATUS=serving with 1 workers")
	if err := tc.scaleTo(2); err != nil {
		t.Fatal(err)
	}
	expectFrom(t, ch, tc.Pid(), "scale", "STATUS=serving with 2 workers (scaled)")
}

// A scale-down takes a worker still starting first (a crash's respawn,
// hanging in its warm-up): it serves nothing, so the serving worker stays,
// and the starting one never joins the socket.
func TestScaleDownTakesAStartingWorkerFirst(t *testing.T) {
	hang := filepath.Join(t.TempDir(), "hang")
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvWarmHang+"="+hang, clustertest.EnvReplaceTO+"=60s")
	pids := tc.ActivePids()
	victim := tc.AnyActive()
	if err := os.WriteFile(hang, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(victim, syscall.SIGKILL) // its respawn hangs in warm-up
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
	if err := tc.scaleTo(1); err != nil {
		t.Fatalf("Scale(1): %v", err)
	}
	os.Remove(hang)
	ws := tc.Workers()
	if len(ws) != 1 || !pids[ws[0].Pid] || ws[0].Pid == victim {
		t.Fatalf("after Scale(1): %+v; want the serving worker of %v, not the starting %d", ws, pids, warming)
	}
	if slices.Contains(tc.events(), "worker-"+strconv.Itoa(warming)+"-listening") {
		t.Errorf("the starting worker %d joined the socket", warming)
	}
	if r, err := tc.Get("/"); err != nil || r.Pid != ws[0].Pid {
		t.Errorf("GET /: %+v, %v; want served by %d", r, err, ws[0].Pid)
	}
}
