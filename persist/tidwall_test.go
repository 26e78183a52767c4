package persist_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
	"github.com/tidwall/wal"
)

// The design card names github.com/tidwall/wal; our log keeps its file
// format, so its tooling reads a data directory: every entry written
// through our log, over several segment rolls and after a snapshot dropped
// the first segments, reads back through tidwall/wal with the same index and
// bytes. The checkpoint file sits beside the segments and tidwall ignores it
// (its name is not 20 digits).
func TestTidwallReadsOurLog(t *testing.T) {
	sp := space(t, 8<<20)
	dir := t.TempDir()
	m, err := persist.Open(dir, persist.Options{Logger: quiet(), SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Replay(bg, sp.Journal()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for i := range 400 {
		if i == 100 {
			if err := m.Snapshot(bg, sp.Journal()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Set(bg, fmt.Sprintf("key-%03d", i), []byte(fmt.Sprint("value ", i)), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			c.Del(bg, fmt.Sprintf("key-%03d", i/2))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// Our reading of the log: index → entry.
	waldir := filepath.Join(dir, "wal")
	segs, _ := persist.Segments(waldir)
	if len(segs) < 3 || segs[0].Index == 1 {
		t.Fatalf("%d segments, the first at %d; want several, the first ones dropped by the snapshot", len(segs), segs[0].Index)
	}
	ours := map[uint64][]byte{}
	index := segs[0].Index
	for _, s := range segs {
		if s.Index != index {
			t.Fatalf("segment %d follows entry %d", s.Index, index-1)
		}
		ents, err := persist.Entries(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range ents {
			ours[index] = b
			index++
		}
	}
	if _, err := os.Stat(filepath.Join(waldir, persist.CkptName)); err != nil {
		t.Fatalf("no checkpoint beside the segments: %v", err)
	}

	// tidwall/wal's, on a copy (Open may write).
	cp := t.TempDir()
	ents, _ := os.ReadDir(waldir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(waldir, e.Name()))
		os.WriteFile(filepath.Join(cp, e.Name()), b, 0o600)
	}
	tl, err := wal.Open(cp, &wal.Options{LogFormat: wal.Binary, NoSync: true})
	if err != nil {
		t.Fatalf("tidwall/wal cannot open our log: %v", err)
	}
	defer tl.Close()
	first, _ := tl.FirstIndex()
	last, _ := tl.LastIndex()
	if first != segs[0].Index || last != index-1 {
		t.Fatalf("tidwall/wal sees entries %d..%d; we wrote %d..%d", first, last, segs[0].Index, index-1)
	}
	for i := first; i <= last; i++ {
		b, err := tl.Read(i)
		if err != nil {
			t.Fatalf("tidwall/wal entry %d: %v", i, err)
		}
		if !bytes.Equal(b, ours[i]) {
			t.Fatalf("tidwall/wal entry %d = %q; we wrote %q", i, b, ours[i])
		}
		if _, err := persist.DecodeRecord(b); err != nil {
			t.Fatalf("entry %d as tidwall/wal reads it is not a record: %v", i, err)
		}
	}
	lastRec, _ := persist.DecodeRecord(ours[last])
	if lastRec.Op != persist.OpDel || lastRec.Key != "key-199" {
		t.Fatalf("the last entry is %+v; want the Del of key-199 (after the Set of key-399)", lastRec)
	}
	t.Logf("tidwall/wal read entries %d..%d over %d segments, the same bytes", first, last, len(segs))
}

// A data directory whose log tidwall/wal wrote (records of ours, in its
// binary format, no checkpoint, no lock file: what a user's tooling, or
// the release before checkpoints, leaves) opens as a legacy one and
// replays every entry, over its segment rolls.
func TestTidwallWrittenDirectoryOpens(t *testing.T) {
	dir := t.TempDir()
	tl, err := wal.Open(filepath.Join(dir, "wal"), &wal.Options{LogFormat: wal.Binary, SegmentSize: 2048, DirPerms: 0o700, FilePerms: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	muts := []persist.Mutation{{Op: persist.OpDefine, Cache: "p", Durability: persist.Always}}
	for i := range 100 {
		muts = append(muts, persist.Mutation{Op: persist.OpSet, Cache: "p", Key: fmt.Sprintf("key-%03d", i), Value: []byte(fmt.Sprint("v", i))})
	}
	muts = append(muts, persist.Mutation{Op: persist.OpDel, Cache: "p", Key: "key-007"})
	for i, mu := range muts {
		if err := tl.Write(uint64(i+1), persist.AppendRecord(nil, mu)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := persist.Segments(filepath.Join(dir, "wal")); len(segs) < 2 {
		t.Fatalf("tidwall/wal wrote %d segments; want several", len(segs))
	}
	sp := space(t, 8<<20)
	m, err := persist.Open(dir, persist.Options{Logger: quiet(), SegmentSize: 4096})
	if err != nil {
		t.Fatalf("a directory tidwall/wal wrote: %v", err)
	}
	defer m.Close()
	if err := m.Replay(bg, sp.Journal()); err != nil {
		t.Fatal(err)
	}
	if r := m.Recovery(); !r.Legacy || r.LogEntries != len(muts) || r.TornBytes != 0 || r.Salvaged != nil {
		t.Fatalf("Recovery = %+v; want Legacy, %d entries replayed, nothing cut", r, len(muts))
	}
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c.Stats().Entries; n != 99 {
		t.Fatalf("%d entries; want 99", n)
	}
	if v, ok, _ := c.GetInto(nil, "key-099"); !ok || string(v) != "v99" {
		t.Fatalf("key-099 = %q, %v", v, ok)
	}
}
