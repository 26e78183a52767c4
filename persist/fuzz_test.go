package persist_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
)

// validFiles returns a real log segment, snapshot and checkpoint, for the
// seed corpus.
func validFiles(tb testing.TB) (segment, snapshot, checkpoint []byte) {
	dir := tb.TempDir()
	sp, m, stop := running(tb, dir, persist.Options{Logger: quiet()})
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for i := range 5 {
		c.Set(bg, fmt.Sprint("k", i), []byte(fmt.Sprint("value ", i)), cache.SetOptions{})
	}
	m.Snapshot(bg, sp)
	c.Set(bg, "after", []byte("snapshot"), cache.SetOptions{})
	c.Del(bg, "k1")
	stop()
	ents, _ := os.ReadDir(filepath.Join(dir, "wal"))
	for _, e := range ents {
		if len(e.Name()) == 20 {
			segment, _ = os.ReadFile(filepath.Join(dir, "wal", e.Name()))
		}
	}
	snapshot, _ = os.ReadFile(filepath.Join(dir, "snapshot"))
	checkpoint, _ = os.ReadFile(filepath.Join(dir, "wal", "checkpoint"))
	return segment, snapshot, checkpoint
}

// FuzzRecover feeds arbitrary bytes as a log segment, a snapshot and a
// checkpoint: Open and Replay must never panic, and must either recover or
// return an error (a CorruptError for damage); with Salvage, too.
func FuzzRecover(f *testing.F) {
	seg, snap, ck := validFiles(f)
	f.Add(seg, snap, ck, false)
	f.Add(seg, snap, ck, true)
	f.Add(seg, []byte{}, ck, false)
	f.Add(seg[:len(seg)/2], snap, ck, false)
	f.Add(seg, snap, []byte{}, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte("C2SNAP01"), ck[:100], true)
	sp := space(f, 8<<20)
	f.Fuzz(func(t *testing.T, segment, snapshot, checkpoint []byte, salvage bool) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "wal"), 0o700)
		os.WriteFile(filepath.Join(dir, "wal", "00000000000000000001"), segment, 0o600)
		if len(snapshot) > 0 {
			os.WriteFile(filepath.Join(dir, "snapshot"), snapshot, 0o600)
		}
		if len(checkpoint) > 0 {
			os.WriteFile(filepath.Join(dir, "wal", "checkpoint"), checkpoint, 0o600)
		}
		m, err := persist.Open(dir, persist.Options{Logger: quiet(), SegmentSize: 4096, Salvage: salvage})
		if err != nil {
			return
		}
		defer m.Close()
		err = m.Replay(context.Background(), sp)
		var ce *persist.CorruptError
		if err != nil && errors.As(err, &ce) && (ce.File == "" || ce.Offset < 0) {
			t.Fatalf("CorruptError without a place: %v", err)
		}
	})
}
