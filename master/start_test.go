package master_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cluster2/cluster2/master"
)

// TestStartReturnsBeforeUp: Start returns once the workers are spawned, with
// them in Workers (what the monitor shows during the start) and the
// control methods refused until WaitUp put the cluster up.
func TestStartReturnsBeforeUp(t *testing.T) {
	a, dir := newArena(t), t.TempDir()
	hold := filepath.Join(dir, "hold")
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	cfg := scriptedConfig(t, a, 2, "hold", dir)
	cfg.OnEvent = r.onEvent
	m, err := master.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	if m.Up() {
		t.Error("Up before the workers warmed up")
	}
	ws := m.Workers()
	if len(ws) != 2 {
		t.Fatalf("Workers() after Start = %+v; want the 2 workers, spawned", ws)
	}
	for _, w := range ws {
		if w.State != master.Forked && w.State != master.Warming {
			t.Errorf("worker %d is %v while its warm-up is held; want forked or warming", w.Pid, w.State)
		}
	}
	if err := m.Replace(ws[0].Pid); !errors.Is(err, master.ErrWrongState) {
		t.Errorf("Replace before WaitUp: %v; want ErrWrongState", err)
	}
	if err := m.RollingRestart(context.Background()); !errors.Is(err, master.ErrWrongState) {
		t.Errorf("RollingRestart before WaitUp: %v; want ErrWrongState", err)
	}
	os.Remove(hold)
	if err := m.WaitUp(context.Background()); err != nil {
		t.Fatalf("WaitUp: %v (events %v)", err, r.trace())
	}
	if err := m.WaitUp(context.Background()); err != nil {
		t.Errorf("second WaitUp: %v; want the same outcome, nil", err)
	}
	if !m.Up() {
		t.Error("not Up after WaitUp")
	}
	for _, who := range []string{"a", "b"} {
		if ok, _ := subsequence(r.trace(), []string{who + ":forked", who + ":listening", "up"}); !ok {
			t.Errorf("events %v; want %s forked and listening before up", r.trace(), who)
		}
	}
}

// Exe defaults to the executable's path resolved when the defaults are
// applied (os.Executable), not /proc/self/exe: a rolling restart after a
// new binary was renamed over that path runs the new file. A given Exe is
// kept.
func TestExeDefaultsToTheExecutablePath(t *testing.T) {
	want, err := os.Executable()
	if err != nil {
		t.Skipf("os.Executable: %v", err)
	}
	if got := (master.Config{}).WithDefaults().Exe; got != want || got != master.DefaultExe() {
		t.Errorf("default Exe = %q; want os.Executable() %q", got, want)
	}
	if got := (master.Config{Exe: "/x/y"}).WithDefaults().Exe; got != "/x/y" {
		t.Errorf("Exe /x/y became %q", got)
	}
}
