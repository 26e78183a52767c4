package persist

// A standalone cache manager killed after writing a batch to the log
// (pwrite) and publishing Logged, but before its fdatasync; the master
// restarts one, which Resumes. The Always writer that waited for the dead
// manager must not be acknowledged before an fdatasync covers its record.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
)

func TestResumeSyncsBeforeAcknowledging(t *testing.T) {
	bg := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp := newSpace(t)
	dir := t.TempDir()

	// The first manager replays (as the master does) and persists.
	m1, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Replay(bg, sp); err != nil {
		t.Fatal(err)
	}
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatal(err)
	}
	// Drain the definition record the way Run does, and sync it.
	runOnce := func(m *Manager, doSync bool) {
		m.mu.Lock()
		_, err := m.p.Read(4096, func(r cache.Record) error {
			name, _ := m.info(sp, r.Cache)
			key, exp, rdur := r.Key, r.ExpireAt, uint8(0)
			if r.Op == cache.OpDefine {
				_, o, _ := sp.CacheInfo(r.Cache)
				key, exp, rdur = nil, int64(o.Expire), uint8(o.Durability)
			}
			m.log.add(opCode(r.Op), rdur, name, key, r.Value, exp)
			return nil
		})
		if err == nil {
			err = m.writeBatchLocked()
		}
		m.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		m.p.Logged(m.p.Position())
		if doSync {
			if err := m.sync(); err != nil {
				t.Fatal(err)
			}
			m.p.Durable(m.p.Position())
		}
	}
	runOnce(m1, true)
	syncs0 := sp.PersistStats().Syncs

	// An Always writer: it waits for durable to pass its record.
	done := make(chan error, 1)
	go func() {
		_, err := c.Set(bg, "acked", []byte("must survive a power cut"), cache.SetOptions{})
		done <- err
	}()
	for m1.p.Tail() == m1.p.Position() {
		time.Sleep(time.Millisecond)
	}
	// m1 does the first half of Run's loop body: Read, flush (pwrite),
	// Logged. Then it is killed (kill -9) before m.sync(): we simply never
	// touch it again.
	runOnce(m1, false)
	m1.lock.Close() // what the kernel does when m1 is killed: its flock goes
	if !m1.log.dirty {
		t.Fatal("setup: m1's write should be unsynced")
	}
	select {
	case err := <-done:
		t.Fatalf("Set returned before any manager synced: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	// The restarted standalone manager: Open, Resume, Run.
	m2, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Resume(sp); err != nil {
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
	syncs := sp.PersistStats().Syncs - syncs0
	cancel()
	<-runDone
	t.Logf("Always Set returned %v; fsyncs of the log after its record was written: %d (m1 never synced it)", setErr, syncs)
	if setErr == nil && syncs == 0 {
		t.Errorf("an Always Set was acknowledged although no fdatasync covered its record")
	}
	// And the checkpoint m2 wrote names the record durable.
	ck, _, err := readCheckpoint(filepath.Join(dir, "wal"))
	if err != nil || ck.dNext < 3 {
		t.Errorf("checkpoint after Resume = %+v, %v; want its durable end past the definition and the Set (entry 3)", ck, err)
	}
}

// The checkpoint a sync writes can only claim the batch being synced; an
// idle log settles it (settleAfter later) so that the checkpoint names
// everything acknowledged durable, without a Close.
func TestIdleLogSettlesItsCheckpoint(t *testing.T) {
	bg := context.Background()
	sp := newSpace(t)
	dir := t.TempDir()
	m, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Replay(bg, sp); err != nil {
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
		ck, _, err := readCheckpoint(filepath.Join(dir, "wal"))
		return err == nil && ck.dNext == want && ck.eNext == want
	}
	deadline := time.Now().Add(2 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if ck, _, err := readCheckpoint(filepath.Join(dir, "wal")); !settled() {
		t.Fatalf("checkpoint of an idle log = %+v, %v; want its durable end at entry %d", ck, err, want)
	}
}
