package persist_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
)

// segmentFiles lists the log's segment files in order.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if len(e.Name()) == 20 {
			out = append(out, filepath.Join(dir, "wal", e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// dataEnd returns the offset past the last non-zero byte of b.
func dataEnd(b []byte) int {
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return n
}

// A segment being written is preallocated: a log writer that stops without
// Close (kill -9) leaves zeros behind the last entry, which end the log.
func TestPreallocatedTailEndsTheLog(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet(), SegmentSize: 1 << 20}
	sp, m, _ := running(t, dir, opts)
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for i := range 30 {
		if _, err := c.Set(bg, fmt.Sprint("k", i), []byte("v"), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// What a kill leaves: copy the files while the log writer still runs.
	copyDir := t.TempDir()
	os.MkdirAll(filepath.Join(copyDir, "wal"), 0o700)
	for _, f := range append(segmentFiles(t, dir), filepath.Join(dir, "wal", "checkpoint")) {
		b, _ := os.ReadFile(f)
		if len(b) != 1<<20 && filepath.Base(f) != "checkpoint" {
			t.Fatalf("segment %s is %d bytes while written; want preallocated to 1 MiB", f, len(b))
		}
		os.WriteFile(filepath.Join(copyDir, "wal", filepath.Base(f)), b, 0o600)
	}
	_ = m
	sp2, m2, _ := running(t, copyDir, opts)
	if r := m2.Recovery(); r.TornBytes != 0 || r.Salvaged != nil || r.LogEntries < 31 {
		t.Fatalf("Recovery = %+v; want 31 entries (a definition and 30 sets), nothing cut", r)
	}
	c2, _ := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c2.Stats().Entries; n != 30 {
		t.Fatalf("%d entries; want 30", n)
	}
	// And it appends after them.
	c2.Set(bg, "after", []byte("restart"), cache.SetOptions{})
	m2.Close()
}

// Pages written back out of order before a crash of the machine can leave
// zeros followed by data behind the last synced entry: none of it was
// acknowledged, so it is cut off and reported.
func TestHoleInTheLastSegmentIsCutAndReported(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet()}
	writeKeys(t, dir, opts, 20, false)
	seg := lastSegment(t, dir)
	b, _ := os.ReadFile(seg)
	end := dataEnd(b)
	b = append(b[:end], make([]byte, 5000)...)
	b = append(b, []byte("stray page of a later write")...)
	os.WriteFile(seg, b, 0o600)
	sp2, m2, _ := running(t, dir, opts)
	r := m2.Recovery()
	if r.TornFile != seg || r.TornBytes != 5000+int64(len("stray page of a later write")) {
		t.Fatalf("Recovery = %+v; want the hole and the data after it cut from %s", r, seg)
	}
	c2, _ := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c2.Stats().Entries; n != 20 {
		t.Fatalf("%d entries after cutting; want 20", n)
	}
}

// Segments roll when full; a hole in a segment that is not the last one is
// damage (each was fsynced whole before the next began), named by file and
// offset.
func TestHoleInAnEarlierSegmentIsCorruption(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet(), SegmentSize: 4096}
	sp, _, stop := running(t, dir, opts)
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for i := range 200 {
		if _, err := c.Set(bg, fmt.Sprintf("key-%03d", i), []byte("a value of some length"), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments of 4 KiB for 200 sets; want several", len(segs))
	}
	sp2, m2, stop2 := running(t, dir, opts)
	c2, _ := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c2.Stats().Entries; n != 200 {
		t.Fatalf("%d entries over %d segments; want 200 (recovery %+v)", n, len(segs), m2.Recovery())
	}
	stop2()

	b, _ := os.ReadFile(segs[1])
	clear(b[100:200])
	os.WriteFile(segs[1], b, 0o600)
	m3, err := persist.Open(dir, opts)
	if err == nil {
		err = m3.Replay(bg, space(t, 4<<20).Journal())
		m3.Close()
	}
	var ce *persist.CorruptError
	if !errors.As(err, &ce) || ce.File != segs[1] {
		t.Fatalf("start with zeros in the middle of %s = %v; want a CorruptError naming it", segs[1], err)
	}

	// Salvage keeps the entries before the hole, drops the later segments,
	// and the log goes on from there.
	opts.Salvage = true
	sp4, m4, stop4 := running(t, dir, opts)
	if m4.Recovery().Salvaged == nil {
		t.Fatal("Salvage did not report what it dropped")
	}
	c4, _ := sp4.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	kept := c4.Stats().Entries
	if kept == 0 || kept >= 200 {
		t.Fatalf("salvaged %d entries; want those before the damage", kept)
	}
	if n := len(segmentFiles(t, dir)); n != 2 {
		t.Fatalf("%d segments after salvage; want 2 (the first and the damaged one, cut)", n)
	}
	// Nothing was deleted: the dropped segments and the damaged one's tail
	// are in DIR/salvaged-<time>/.
	moved := salvagedFiles(t, dir)
	for _, s := range segs[2:] {
		if b, _ := os.ReadFile(s); b != nil {
			t.Fatalf("%s still in the log after salvage", s)
		}
		if _, ok := moved[filepath.Base(s)]; !ok {
			t.Fatalf("salvage dropped %s without keeping it (moved %d files)", s, len(moved))
		}
	}
	if len(moved) != len(segs)-1 {
		t.Fatalf("salvage moved %d files; want the %d segments after the damage and the damaged one's tail", len(moved), len(segs)-2)
	}
	if _, err := c4.Set(bg, "after-salvage", []byte("x"), cache.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	stop4()
	sp5, m5, _ := running(t, dir, persist.Options{Logger: quiet(), SegmentSize: 4096})
	c5, _ := sp5.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if v, ok, _ := c5.GetInto(nil, "after-salvage"); !ok || string(v) != "x" || c5.Stats().Entries != kept+1 {
		t.Fatalf("after salvage and restart: %q %v, %d entries (recovery %+v); want the salvaged ones and the new one",
			v, ok, c5.Stats().Entries, m5.Recovery())
	}
}
