package persist_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
)

// copyWal copies the files of dir's log (segments and checkpoint) into a new
// data directory: what a kill -9 of the log writer leaves on disk (the page
// cache survives it).
func copyWal(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	os.MkdirAll(filepath.Join(to, "wal"), 0o700)
	ents, _ := os.ReadDir(filepath.Join(dir, "wal"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "wal", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, "wal", e.Name()), b, 0o600)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "snapshot")); err == nil {
		os.WriteFile(filepath.Join(to, "snapshot"), b, 0o600)
	}
	return to
}

// openReplay opens dir and replays it into a fresh space; the log writer is
// closed at the end of the test.
func openReplay(t *testing.T, dir string, opts persist.Options) (*persist.LogWriter, *cache.Space, error) {
	t.Helper()
	m, err := persist.Open(dir, opts)
	if err != nil {
		return nil, nil, err
	}
	sp := space(t, 8<<20)
	if err := m.Replay(bg, sp.Journal()); err != nil {
		m.Close()
		return nil, nil, err
	}
	t.Cleanup(func() { m.Close() })
	return m, sp, nil
}

func corruptAt(t *testing.T, err error, file string) *persist.CorruptError {
	t.Helper()
	var ce *persist.CorruptError
	if !errors.Is(err, persist.ErrCorrupt) || !errors.As(err, &ce) || ce.File != file {
		t.Fatalf("start = %v; want a CorruptError naming %s", err, file)
	}
	if msg := err.Error(); !strings.Contains(msg, "Salvage") || !strings.Contains(msg, "-salvage") || !strings.Contains(msg, "salvaged-") {
		t.Fatalf("the error does not say how to start anyway (library and demo): %v", err)
	}
	return ce
}

// salvagedFiles returns the files of dir's salvaged-* directories by name.
func salvagedFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	dirs, _ := filepath.Glob(filepath.Join(dir, "salvaged-*"))
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(d, e.Name()))
			out[e.Name()] = b
		}
	}
	return out
}

// Damage at the start of the last segment, before its durable end (4 bytes
// at offset 0: the attack; zeros there read as the hole a crash can
// leave past the durable end), is not a torn write: start-up stops, on
// a cleanly closed log and on one whose log writer was killed (its checkpoint
// settled by the idle log writer), and Salvage keeps the damaged bytes aside.
func TestDamageBeforeTheDurableEndIsCorruption(t *testing.T) {
	opts := persist.Options{Logger: quiet()}
	for _, tc := range []struct {
		killed bool
		damage []byte
	}{{false, []byte{0, 0, 0, 0}}, {true, []byte{0, 0, 0, 0}}, {false, []byte{0xde, 0xad, 0xbe, 0xef}}} {
		killed := tc.killed
		t.Run(fmt.Sprintf("killed=%v,damage=%x", killed, tc.damage), func(t *testing.T) {
			dir := t.TempDir()
			sp, _, stop := running(t, dir, opts)
			c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
			for i := range 30 {
				if _, err := c.Set(bg, fmt.Sprintf("key-%03d", i), []byte("some value"), cache.SetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if killed {
				time.Sleep(100 * time.Millisecond) // idle: the checkpoint settles
				dir = copyWal(t, dir)
			} else {
				stop()
			}
			seg := lastSegment(t, dir)
			b, _ := os.ReadFile(seg)
			orig := append([]byte(nil), b...)
			copy(b, tc.damage)
			os.WriteFile(seg, b, 0o600)
			_, _, err := openReplay(t, dir, opts)
			if ce := corruptAt(t, err, seg); ce.Offset != 0 {
				t.Fatalf("offset %d; want 0", ce.Offset)
			}
			if got, _ := os.ReadFile(seg); !bytes.Equal(got, b) {
				t.Fatal("a refused start changed the segment")
			}

			// Salvage starts with nothing of the segment and keeps its bytes.
			o := opts
			o.Salvage = true
			m, sp2, err := openReplay(t, dir, o)
			if err != nil || m.Recovery().Salvaged == nil {
				t.Fatalf("salvage: %v", err)
			}
			if _, ok := sp2.Lookup("p"); ok {
				t.Fatal("cache p restored from a segment damaged at offset 0")
			}
			kept := salvagedFiles(t, dir)[filepath.Base(seg)+".from-0"]
			if n := dataEnd(orig); len(kept) != n || !bytes.Equal(kept[4:], orig[4:n]) {
				t.Fatalf("salvage kept %d bytes of the segment; want its %d bytes of data", len(kept), n)
			}
		})
	}
}

// Damage past the durable end was never acknowledged: it is cut as torn,
// and what is cut is kept aside.
func TestDamagePastTheDurableEndIsCut(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet()}
	writeKeys(t, dir, opts, 20, false)
	seg := lastSegment(t, dir)
	f, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("\x30not an entry, written after the last fsync"))
	f.Close()
	m, sp, err := openReplay(t, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recovery(); r.TornFile != seg || r.TornBytes == 0 {
		t.Fatalf("Recovery = %+v; want the bytes past the durable end cut from %s", r, seg)
	}
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c.Stats().Entries; n != 20 {
		t.Fatalf("%d entries; want 20", n)
	}
	if len(salvagedFiles(t, dir)) != 1 {
		t.Fatal("the cut bytes were not kept")
	}
}

// A missing segment, in the middle or at the end, and a missing snapshot,
// stop start-up with a CorruptError naming what is missing; Salvage keeps
// what comes before the gap and moves the rest aside.
func TestMissingFilesAreCorruption(t *testing.T) {
	opts := persist.Options{Logger: quiet(), SegmentSize: 4096}
	fill := func(t *testing.T, snapshot bool) (string, []string) {
		dir := t.TempDir()
		sp, m, stop := running(t, dir, opts)
		c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
		for i := range 200 {
			if i == 100 && snapshot {
				if err := m.Snapshot(bg, sp.Journal()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Set(bg, fmt.Sprintf("key-%03d", i), []byte("a value of some length"), cache.SetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		stop()
		segs := segmentFiles(t, dir)
		if len(segs) < 3 && !snapshot {
			t.Fatalf("%d segments; want several", len(segs))
		}
		return dir, segs
	}
	t.Run("middle", func(t *testing.T) {
		dir, segs := fill(t, false)
		os.Remove(segs[1])
		_, _, err := openReplay(t, dir, opts)
		corruptAt(t, err, segs[2])
		o := opts
		o.Salvage = true
		m, sp, err := openReplay(t, dir, o)
		if err != nil || m.Recovery().Salvaged == nil {
			t.Fatalf("salvage: %v", err)
		}
		c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
		kept := salvagedFiles(t, dir)
		if n := c.Stats().Entries; n == 0 || n >= 100 || len(kept) != len(segs)-2 {
			t.Fatalf("salvage kept %d entries and moved %d files aside; want those of the first segment, and the %d after the gap", n, len(kept), len(segs)-2)
		}
	})
	t.Run("last", func(t *testing.T) {
		dir, segs := fill(t, false)
		os.Remove(segs[len(segs)-1])
		_, _, err := openReplay(t, dir, opts)
		corruptAt(t, err, segs[len(segs)-1])
	})
	t.Run("all", func(t *testing.T) {
		dir, segs := fill(t, false)
		for _, s := range segs {
			os.Remove(s)
		}
		_, _, err := openReplay(t, dir, opts)
		corruptAt(t, err, segs[len(segs)-1])
	})
	t.Run("snapshot", func(t *testing.T) {
		dir, segs := fill(t, true)
		os.Remove(filepath.Join(dir, "snapshot"))
		_, _, err := openReplay(t, dir, opts)
		corruptAt(t, err, segs[0])
		if !strings.Contains(err.Error(), "snapshot") || strings.Contains(err.Error(), "before the cache's definition") {
			t.Fatalf("a missing snapshot reported as %v; want it named", err)
		}
	})
}
