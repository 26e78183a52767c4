package master_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
)

// TestCheckRefusesTheRollingRestart: a Check that fails refuses the whole
// rolling restart before any successor (EventCheckFailed, the error
// returned, the same workers); one that passes lets it run, and it gets the
// executable every successor runs.
func TestCheckRefusesTheRollingRestart(t *testing.T) {
	a, dir := newArena(t), t.TempDir()
	errBad := errors.New("scripted check failure")
	var checked []string
	fail := true
	r := newRecorder()
	cfg := scriptedConfig(t, a, 2, "ok", dir)
	cfg.OnEvent = r.onEvent
	cfg.Check = func(ctx context.Context, exe string) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Check's ctx has no deadline; want ReplaceTimeout")
		}
		checked = append(checked, exe)
		if fail {
			return errBad
		}
		return nil
	}
	m, err := master.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	if err := m.WaitUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	pids := func() []int {
		var ps []int
		for _, w := range m.Workers() {
			ps = append(ps, w.Pid)
		}
		slices.Sort(ps)
		return ps
	}
	before := pids()
	if err := m.RollingRestart(context.Background()); !errors.Is(err, errBad) {
		t.Fatalf("RollingRestart with a failing check = %v; want its error", err)
	}
	if r.count("check-failure") != 1 || r.count("c:forked") != 0 || !slices.Equal(pids(), before) {
		t.Fatalf("after a refused restart: events %v, workers %v; want one check-failure, no spawn, workers %v", r.trace(), pids(), before)
	}
	r.waitFor(t, "rolling-restart", "check-failure", "rolling-restart-done")
	fail = false
	if err := m.RollingRestart(context.Background()); err != nil {
		t.Fatalf("RollingRestart with a passing check = %v", err)
	}
	if now := pids(); slices.ContainsFunc(now, func(p int) bool { return slices.Contains(before, p) }) {
		t.Fatalf("workers %v after the restart; want none of %v", now, before)
	}
	if len(checked) != 2 || checked[0] != os.Args[0] || checked[1] != os.Args[0] {
		t.Fatalf("checked %v; want the Exe twice", checked)
	}
}

// scriptedConfig is a master of n workers of this test binary following
// script (see envScript), counting spawns in dir, with short bounds.
func scriptedConfig(t *testing.T, a *shm.Arena, n int, script, dir string) master.Config {
	return master.Config{
		Workers: n, Listener: listenerFile(t), Arena: a, Exe: os.Args[0], Args: []string{os.Args[0], "-test.run=^$"},
		Env:               append(os.Environ(), envScript+"="+script, envDir+"="+dir),
		HeartbeatInterval: 100 * time.Millisecond, ReplaceTimeout: 20 * time.Second, StopTimeout: 20 * time.Second,
	}
}
