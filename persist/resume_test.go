package persist_test

// A standalone cache manager killed after writing a batch to the log
// (pwrite) and publishing Logged, but before its fdatasync; the master
// restarts one, which Resumes. The Always writer that waited for the dead
// log writer must not be acknowledged before an fdatasync covers its record.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
)

func TestResumeSyncsBeforeAcknowledging(t *testing.T) {
	sp := space(t, 8<<20)
	dir := t.TempDir()

	// The first log writer replays (as the master does) and persists.
	m1, err := persist.Open(dir, persist.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Replay(bg, sp.Journal()); err != nil {
		t.Fatal(err)
	}
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatal(err)
	}
	// Drain the definition record the way Run does, and sync it.
	if err := m1.Step(true); err != nil {
		t.Fatal(err)
	}
	syncs0 := sp.Journal().Stats().Syncs

	// An Always writer: it waits for durable to pass its record.
	done := make(chan error, 1)
	go func() {
		_, err := c.Set(bg, "acked", []byte("must survive a power cut"), cache.SetOptions{})
		done <- err
	}()
	for p := m1.Cursor(); p.Tail() == p.Position(); {
		time.Sleep(time.Millisecond)
	}
	// m1 does the first half of Run's loop body: Read, flush (pwrite),
	// Logged. Then it is killed (kill -9) before m.sync(): we simply never
	// touch it again.
	if err := m1.Step(false); err != nil {
		t.Fatal(err)
	}
	m1.Die() // what the kernel does when m1 is killed: its flock goes
	if !m1.Unsynced() {
		t.Fatal("setup: m1's write should be unsynced")
	}
	select {
	case err := <-done:
		t.Fatalf("Set returned before any log writer synced: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	// The restarted cache manager's log writer: Open, Resume, Run.
	m2, err := persist.Open(dir, persist.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Resume(sp.Journal()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	runDone := make(chan error, 1)
	go func() { runDone <- m2.Run(ctx) }()
	var setErr error
	select {
	case setErr = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Set still waiting")
	}
	syncs := sp.Journal().Stats().Syncs - syncs0
	cancel()
	<-runDone
	t.Logf("Always Set returned %v; fsyncs of the log after its record was written: %d (m1 never synced it)", setErr, syncs)
	if setErr == nil && syncs == 0 {
		t.Errorf("an Always Set was acknowledged although no fdatasync covered its record")
	}
	// And the checkpoint m2 wrote names the record durable.
	durable, written, err := persist.CheckpointEnds(dir)
	if err != nil || durable < 3 {
		t.Errorf("checkpoint after Resume = durable %d, written %d, %v; want its durable end past the definition and the Set (entry 3)", durable, written, err)
	}
}

// The checkpoint a sync writes can only claim the batch being synced; an
// idle log settles it (settleAfter later) so that the checkpoint names
// everything acknowledged durable, without a Close.
func TestIdleLogSettlesItsCheckpoint(t *testing.T) {
	sp := space(t, 8<<20)
	dir := t.TempDir()
	m, err := persist.Open(dir, persist.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Replay(bg, sp.Journal()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	defer func() { cancel(); <-runDone }() // before the arena is unmapped
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for i := range 3 {
		if _, err := c.Set(bg, fmt.Sprint("k", i), []byte("v"), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(5) // entries 1 (definition) to 4 (the sets): the next is 5
	settled := func() bool {
		durable, written, err := persist.CheckpointEnds(dir)
		return err == nil && durable == want && written == want
	}
	deadline := time.Now().Add(2 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if durable, written, err := persist.CheckpointEnds(dir); !settled() {
		t.Fatalf("checkpoint of an idle log = durable %d, written %d, %v; want its durable end at entry %d", durable, written, err, want)
	}
}
