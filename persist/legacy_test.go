package persist_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
)

// copyLegacy copies the data directory testdata/legacy/name (written by the
// release before checkpoints; see its README) into a new data directory.
func copyLegacy(t *testing.T, name string) string {
	t.Helper()
	from, to := filepath.Join("testdata", "legacy", name), t.TempDir()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// logTo returns a logger writing into buf.
func logTo(buf *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

// checkLegacyKeys checks sp holds what the legacy directories were written
// with: key-010 to key-199 (the first ten deleted), key-i = "vi".
func checkLegacyKeys(t *testing.T, sp *cache.Space) {
	t.Helper()
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Stats().Entries; n != 190 {
		t.Fatalf("%d entries; want 190", n)
	}
	for i := range 200 {
		v, ok, _ := c.GetInto(nil, fmt.Sprintf("key-%03d", i))
		if i < 10 && ok || i >= 10 && (!ok || string(v) != fmt.Sprint("v", i)) {
			t.Fatalf("key-%03d = %q, %v", i, v, ok)
		}
	}
}

// A data directory written by the previous release (no checkpoint sidecar,
// no checkpoint slots, no lock file) opens without Salvage, by that
// release's rule: a torn tail past the last entry is cut, reported and kept;
// the upgrade is logged once at WARN, and the checkpoint it writes makes the
// next start hold the log to the new rule (damage at the start of the last
// segment, which the old rule would have cut as a hole, then stops
// start-up).
func TestLegacyDirectoryOpens(t *testing.T) {
	for _, name := range []string{"closed", "killed"} {
		t.Run(name, func(t *testing.T) {
			dir := copyLegacy(t, name)
			seg := lastSegment(t, dir)
			if name == "killed" {
				// A torn write into the preallocated tail: a length of 48,
				// 10 bytes of it, zeros after.
				b, _ := os.ReadFile(seg)
				copy(b[dataEnd(b):], "\x30torn write")
				os.WriteFile(seg, b, 0o600)
			}
			var logs bytes.Buffer
			opts := persist.Options{Logger: logTo(&logs), SegmentSize: 4096}
			m, sp, err := openReplay(t, dir, opts)
			if err != nil {
				t.Fatalf("a directory of the previous release: %v", err)
			}
			r := m.Recovery()
			if !r.Legacy || r.Salvaged != nil {
				t.Fatalf("Recovery = %+v; want Legacy, nothing salvaged", r)
			}
			if name == "killed" {
				kept := salvagedFiles(t, dir)
				if r.TornFile != seg || r.TornBytes != 11 || len(kept) != 1 {
					t.Fatalf("Recovery = %+v, kept %d files; want the 11 torn bytes of %s cut and kept", r, len(kept), seg)
				}
			} else if r.TornBytes != 0 {
				t.Fatalf("Recovery = %+v; want nothing cut", r)
			}
			checkLegacyKeys(t, sp)
			if n := strings.Count(logs.String(), "before checkpoints"); n != 1 || !strings.Contains(logs.String(), "level=WARN") {
				t.Fatalf("logged %d warnings of the upgrade; want one at WARN:\n%s", n, logs.String())
			}
			m.Close()
			if _, err := os.Stat(filepath.Join(dir, "wal", "checkpoint")); err != nil {
				t.Fatalf("no checkpoint written: %v", err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "lock")); bytes.Count(b, []byte("\n")) != 1 {
				t.Fatalf("the lock file still notes the upgrade: %q", b)
			}

			// The next start: the new rule, no warning.
			logs.Reset()
			m, sp, err = openReplay(t, dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if r := m.Recovery(); r.Legacy || r.TornBytes != 0 {
				t.Fatalf("second start: Recovery = %+v; want the new rule and nothing cut", r)
			}
			checkLegacyKeys(t, sp)
			if strings.Contains(logs.String(), "before checkpoints") {
				t.Fatalf("the upgrade logged again:\n%s", logs.String())
			}
			m.Close()
			b, _ := os.ReadFile(seg)
			copy(b, []byte{0, 0, 0, 0})
			os.WriteFile(seg, b, 0o600)
			_, _, err = openReplay(t, dir, opts)
			corruptAt(t, err, seg)
		})
	}
}

// The previous release's rule still refuses an entry that fails its
// checksum with data after it; the directory stays a legacy one (the lock
// file notes the upgrade under way), so the next start with Salvage
// salvages the damage instead of reporting a missing checkpoint, and
// upgrades it.
func TestLegacyDirectoryDamageStopsStartUp(t *testing.T) {
	dir := copyLegacy(t, "closed")
	seg := lastSegment(t, dir)
	b, _ := os.ReadFile(seg)
	b[100] ^= 0xff
	os.WriteFile(seg, b, 0o600)
	opts := persist.Options{Logger: quiet(), SegmentSize: 4096}
	for range 2 {
		_, _, err := openReplay(t, dir, opts)
		if ce := corruptAt(t, err, seg); ce.Offset == 0 || ce.Offset > 100 {
			t.Fatalf("offset %d; want the entry holding byte 100", ce.Offset)
		}
	}
	opts.Salvage = true
	m, sp, err := openReplay(t, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recovery(); !r.Legacy || r.Salvaged == nil {
		t.Fatalf("Recovery = %+v; want Legacy and the damage salvaged", r)
	}
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c.Stats().Entries; n < 100 || n >= 190 {
		t.Fatalf("%d entries; want those before the damage", n)
	}
}

// A directory of this release whose checkpoint sidecar was deleted is not
// taken as the previous release's: killed (its last segment carries
// checkpoint slots; the copy has no lock file) or cleanly closed (no slots
// left: its lock file shows this release opened it), start-up stops with a
// CorruptError naming the missing checkpoint.
func TestMissingCheckpointIsNotLegacy(t *testing.T) {
	for _, killed := range []bool{true, false} {
		t.Run(fmt.Sprint("killed=", killed), func(t *testing.T) {
			dir, opts := t.TempDir(), persist.Options{Logger: quiet()}
			sp, _, stop := running(t, dir, opts)
			c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
			for i := range 20 {
				if _, err := c.Set(bg, fmt.Sprintf("key-%03d", i), []byte("some value"), cache.SetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			want := "lock file"
			if killed {
				dir, want = copyWal(t, dir), "carries checkpoint slots"
				if _, err := os.Stat(filepath.Join(dir, "lock")); err == nil {
					t.Fatal("the copy has a lock file")
				}
			} else {
				stop()
			}
			ck := filepath.Join(dir, "wal", "checkpoint")
			if err := os.Remove(ck); err != nil {
				t.Fatal(err)
			}
			_, _, err := openReplay(t, dir, opts)
			corruptAt(t, err, ck)
			if msg := err.Error(); !strings.Contains(msg, "checkpoint is missing") || !strings.Contains(msg, want) {
				t.Fatalf("start = %v; want it to say the checkpoint is missing and why the directory is not a legacy one (%s)", err, want)
			}
		})
	}
}
