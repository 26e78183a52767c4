package master_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
	"golang.org/x/sys/unix"

	"github.com/cluster2/cluster2/internal/proc" // the roles, slots and fds an auxiliary process reads
)

// auxProcess is this test binary re-executed as an auxiliary process: it
// checks the descriptors internal/proc promises (no listener at fd 3, the
// arena at fd 4), joins its slot, says it is ready in envDir and runs until EOF on
// the death pipe (fd 5), the master's signal to finish.
func auxProcess(id proc.Identity) int {
	// fd 3 was closed at exec (the runtime may have reused the number for
	// a file of its own since): it must not be the listener, a socket.
	var st unix.Stat_t
	if err := unix.Fstat(proc.ListenerFD, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		fmt.Fprintln(os.Stderr, "aux: fd 3 is a socket: the listener was handed over")
		return 6
	}
	a, err := shm.Open(os.NewFile(proc.ArenaFD, "arena"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "aux: arena:", err)
		return 7
	}
	if id.Slot != proc.RoleCacheManager.Slot(a.SlotCount()) {
		return 8
	}
	if _, err := a.JoinSlot(id.Slot, uint32(id.Role)); err != nil {
		return 9
	}
	os.WriteFile(filepath.Join(os.Getenv(envDir), fmt.Sprintf("aux-ready-%d", os.Getpid())), nil, 0o600)
	var b [1]byte
	os.NewFile(proc.DeathFD, "death-pipe").Read(b[:])
	return 0
}

// newArena returns an arena of 16 slots (the last one the auxiliary
// process's), closed when the test ends.
func newArena(t *testing.T) *shm.Arena {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// auxTrace returns the auxiliary process's events, as "kind:pid".
func auxTrace(r *recorder) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Kind == master.EventAuxForked || e.Kind == master.EventAuxDied {
			out = append(out, fmt.Sprintf("%v:%d", e.Kind, e.Pid))
		}
	}
	return out
}

// TestAuxIsSupervised: an auxiliary process (the cache manager's role) goes
// through the workers' path: spawned and ready before any worker, in the
// last slot with internal/proc's descriptors, in the master's view of its
// children (Auxiliary, not Workers), reaped and respawned after kill -9
// (its slot released), its death and restart typed events, and stopped
// after the last worker.
func TestAuxIsSupervised(t *testing.T) {
	a, dir := newArena(t), t.TempDir()
	ready := func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "aux-ready-*"))
		return len(m) > 0
	}
	r := newRecorder()
	m, err := master.Start(context.Background(), master.Config{
		Workers: 1, Listener: listenerFile(t), Arena: a, Exe: os.Args[0], Args: []string{os.Args[0], "-test.run=^$"},
		Env:               append(os.Environ(), envScript+"=ok", envDir+"="+dir),
		HeartbeatInterval: 100 * time.Millisecond, ReplaceTimeout: 20 * time.Second, StopTimeout: 20 * time.Second,
		Aux:     []master.Aux{{Role: proc.RoleCacheManager, Ready: ready, CrashBackoffMax: time.Second}},
		OnEvent: r.onEvent,
	})
	if err != nil {
		t.Fatalf("Start: %v (events %v)", err, r.trace())
	}
	if err := m.WaitUp(context.Background()); err != nil {
		t.Fatalf("WaitUp: %v (events %v)", err, r.trace())
	}
	stopped := false
	defer func() {
		if !stopped {
			m.Stop(context.Background())
		}
	}()
	aux := m.Auxiliary()
	if len(aux) != 1 || aux[0].Role != proc.RoleCacheManager || aux[0].Slot != 15 {
		t.Fatalf("Auxiliary() = %+v; want the cache manager in slot 15", aux)
	}
	first := aux[0].Pid
	if tr := r.trace(); len(tr) == 0 || tr[0] != ":aux-forked" {
		t.Errorf("events %v; want the auxiliary process forked before any worker", tr)
	}
	for _, w := range m.Workers() {
		if w.Pid == first {
			t.Errorf("Workers() lists the auxiliary process: %+v", w)
		}
	}

	syscall.Kill(first, syscall.SIGKILL)
	r.waitFor(t, ":aux-died", ":aux-forked")
	var second int
	for deadline := time.Now().Add(30 * time.Second); second == 0 || second == first; {
		if aux = m.Auxiliary(); len(aux) == 1 {
			second = aux[0].Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new auxiliary process after kill -9 of %d: %+v (events %v)", first, aux, r.trace())
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := []string{"aux-forked:" + fmt.Sprint(first), "aux-died:" + fmt.Sprint(first), "aux-forked:" + fmt.Sprint(second)}
	if got := auxTrace(r); !slices.Equal(got, want) {
		t.Errorf("auxiliary events %v; want %v", got, want)
	}
	for _, s := range a.Slots() {
		if s.Pid == first {
			t.Errorf("the dead auxiliary process's slot is still held: %+v", s)
		}
	}

	stopped = true
	if err := m.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if ok, _ := subsequence(r.trace(), []string{"down", "a:died", ":aux-died"}); !ok {
		t.Errorf("events %v; want the auxiliary process to die after the last worker", r.trace())
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Errorf("auxiliary process %d alive after Stop", second)
	}
	if len(m.Auxiliary()) != 0 {
		t.Errorf("Auxiliary() after Stop = %+v", m.Auxiliary())
	}
}
