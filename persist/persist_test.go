package persist_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

var bg = context.Background()

// space makes a fresh arena with a cache space, closed at the end.
func space(tb testing.TB, bytes int64) *cache.Space {
	tb.Helper()
	a, err := shm.Create(shm.Options{Size: bytes + bytes/4 + 2<<20})
	if err != nil {
		tb.Fatal(err)
	}
	sp, err := cache.Setup(bg, a, cache.SpaceOptions{Bytes: bytes})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sp.Close(); a.Close() })
	return sp
}

// running opens dir, replays it into a fresh space and runs the log writer
// until stop is called; stop waits for Run to return and closes the log writer.
func running(tb testing.TB, dir string, opts persist.Options) (*cache.Space, *persist.LogWriter, func()) {
	tb.Helper()
	sp := space(tb, 8<<20)
	m, err := persist.Open(dir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Replay(bg, sp.Journal()); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Run: %v", err)
			}
			m.Close()
		})
	}
	tb.Cleanup(stop)
	return sp, m, stop
}

func TestRestartKeepsPersistentCaches(t *testing.T) {
	dir := t.TempDir()
	opts := persist.Options{Logger: quiet()}
	sp, _, stop := running(t, dir, opts)
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatal(err)
	}
	tmp, _ := sp.Use("tmp", cache.Options{})
	ttl, _ := sp.Use("ttl", cache.Options{Persist: true, Expire: 50 * time.Millisecond})
	for i := range 100 {
		if _, err := c.Set(bg, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if _, _, err := c.Del(bg, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.Set(bg, "empty", []byte{}, cache.SetOptions{})
	if ps := sp.Journal().Stats(); !ps.Attached || ps.Records < 100 || ps.Syncs == 0 {
		t.Fatalf("Journal().Stats() = %+v; want a log writer that logged and fsynced", ps)
	}
	tmp.Set(bg, "gone", []byte("x"), cache.SetOptions{})
	ttl.Set(bg, "short", []byte("x"), cache.SetOptions{})
	ttl.Set(bg, "long", []byte("x"), cache.SetOptions{Expire: time.Hour})
	stop()

	time.Sleep(60 * time.Millisecond)
	sp2, m2, _ := running(t, dir, opts)
	t.Logf("recovery: %+v", m2.Recovery())
	c2, err := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatalf("Use after replay: %v", err)
	}
	for i := range 100 {
		v, ok, _ := c2.GetInto(nil, fmt.Sprint("k", i))
		if i < 10 && ok {
			t.Fatalf("deleted k%d came back as %q", i, v)
		}
		if i >= 10 && (!ok || string(v) != fmt.Sprint("v", i)) {
			t.Fatalf("k%d = %q, %v after restart", i, v, ok)
		}
	}
	if v, ok, _ := c2.GetInto(nil, "empty"); !ok || len(v) != 0 {
		t.Fatalf("empty value = %q, %v", v, ok)
	}
	if _, ok := sp2.Lookup("tmp"); ok {
		t.Fatal("a non-persistent cache was restored")
	}
	ttl2, _ := sp2.Use("ttl", cache.Options{Persist: true, Expire: 50 * time.Millisecond})
	if _, ok, _ := ttl2.GetInto(nil, "short"); ok {
		t.Fatal("an expired entry was resurrected")
	}
	e, err := ttl2.Inspect("long")
	if err != nil || e.TTL < 50*time.Minute {
		t.Fatalf("long-lived entry after restart: %+v, %v", e, err)
	}
}

func TestSnapshotCompactsTheLog(t *testing.T) {
	dir := t.TempDir()
	opts := persist.Options{Logger: quiet(), CompactMin: 64 << 10, CompactRatio: 2}
	sp, m, stop := running(t, dir, opts)
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	val := bytes.Repeat([]byte("v"), 200)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 3000 {
				k := fmt.Sprintf("w%d-k%d", w, i%300)
				if _, err := c.Set(bg, k, append(val[:200:200], fmt.Sprint(i)...), cache.SetOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Snapshot while the writers write, too.
	for range 3 {
		time.Sleep(20 * time.Millisecond)
		if err := m.Snapshot(bg, sp.Journal()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	stop()
	size := dirSize(t, filepath.Join(dir, "wal"))
	sp2, m2, _ := running(t, dir, opts)
	t.Logf("log %d bytes after compaction; recovery %+v", size, m2.Recovery())
	if m2.Recovery().SnapshotEntries == 0 {
		t.Fatal("no snapshot was read")
	}
	c2, _ := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for w := range 4 {
		for k := range 300 {
			key := fmt.Sprintf("w%d-k%d", w, k)
			want := string(val) + fmt.Sprint(2700+k)
			if v, ok, _ := c2.GetInto(nil, key); !ok || string(v) != want {
				t.Fatalf("%s = %.20q…, %v; want the last write", key, v, ok)
			}
		}
	}
}

func TestTornTailIsCutAndReported(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet()}
	writeKeys(t, dir, opts, 20, false)
	seg := lastSegment(t, dir)
	// A crash in the middle of a write: half of a new entry at the end.
	f, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{60, 1, 2, 3, 4, 5})
	f.Close()
	sp2, m2, _ := running(t, dir, opts)
	r := m2.Recovery()
	if r.TornBytes != 6 || r.TornFile != seg {
		t.Fatalf("Recovery = %+v; want 6 torn bytes cut from %s", r, seg)
	}
	c2, _ := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if st := c2.Stats(); st.Entries != 20 {
		t.Fatalf("%d entries after cutting the torn tail; want 20", st.Entries)
	}
}

func TestCorruptionInTheMiddleStopsStartUp(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet()}
	writeKeys(t, dir, opts, 50, false)
	seg := lastSegment(t, dir)
	data, _ := os.ReadFile(seg)
	at := bytes.Index(data, []byte("key-025"))
	data[at] ^= 0xff // flip a byte of the 26th set
	os.WriteFile(seg, data, 0o600)

	m, err := persist.Open(dir, opts)
	var ce *persist.CorruptError
	if err == nil {
		err = m.Replay(bg, space(t, 4<<20).Journal())
		m.Close()
	}
	if !errors.Is(err, persist.ErrCorrupt) || !errors.As(err, &ce) || ce.File != seg || ce.Offset <= 0 {
		t.Fatalf("start with a flipped byte in the middle = %v; want a CorruptError naming %s and an offset", err, seg)
	}
	t.Logf("error: %v", err)

	// With Salvage, what comes before the damage is kept.
	opts.Salvage = true
	sp2, m2, _ := running(t, dir, opts)
	if m2.Recovery().Salvaged == nil {
		t.Fatal("Salvage did not report what it dropped")
	}
	c2, _ := sp2.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if n := c2.Stats().Entries; n < 20 || n >= 50 {
		t.Fatalf("salvaged %d entries; want those before the damage", n)
	}
}

func TestCorruptSnapshotNamesTheFile(t *testing.T) {
	dir, opts := t.TempDir(), persist.Options{Logger: quiet()}
	writeKeys(t, dir, opts, 50, true)
	snap := filepath.Join(dir, "snapshot")
	data, _ := os.ReadFile(snap)
	data[len(data)/2] ^= 0x55
	os.WriteFile(snap, data, 0o600)
	m2, err := persist.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	err = m2.Replay(bg, space(t, 4<<20).Journal())
	var ce *persist.CorruptError
	if !errors.As(err, &ce) || ce.File != snap {
		t.Fatalf("Replay of a damaged snapshot = %v; want a CorruptError naming it", err)
	}
}

// writeKeys runs a log writer on dir and sets key-000… to "some value" in the
// Always cache "p", then (snapshot) writes a snapshot, and stops.
func writeKeys(t *testing.T, dir string, opts persist.Options, n int, snapshot bool) {
	t.Helper()
	sp, m, stop := running(t, dir, opts)
	c, _ := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	for i := range n {
		if _, err := c.Set(bg, fmt.Sprintf("key-%03d", i), []byte("some value"), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if snapshot {
		if err := m.Snapshot(bg, sp.Journal()); err != nil {
			t.Fatal(err)
		}
	}
	stop()
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "wal"))
	var last string
	for _, e := range ents {
		if len(e.Name()) == 20 {
			last = filepath.Join(dir, "wal", e.Name())
		}
	}
	if last == "" {
		t.Fatal("no segment")
	}
	return last
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestRestartKeepsCountersAndTags: a counter comes back as a counter (Add
// goes on from its value, a plain value stays refused), a tagged entry with
// its tags (InvalidateTag after the restart removes it), and what
// InvalidateTag and Clear removed stays removed, through the log alone and
// through a snapshot.
func TestRestartKeepsCountersAndTags(t *testing.T) {
	for _, snap := range []bool{false, true} {
		t.Run(fmt.Sprint("snapshot=", snap), func(t *testing.T) {
			dir := t.TempDir()
			opts := persist.Options{Logger: quiet()}
			copts := cache.Options{Persist: true, Durability: cache.Always}
			sp, m, stop := running(t, dir, opts)
			c, _ := sp.Use("p", copts)
			cl, _ := sp.Use("cl", copts)
			for range 3 {
				if _, err := c.Add(bg, "n", 2, cache.AddOptions{Initial: 40}); err != nil {
					t.Fatal(err)
				}
			}
			c.Set(bg, "plain", []byte("12345678"), cache.SetOptions{})
			for i := range 10 {
				tags := []string{"even"}
				if i%2 == 1 {
					tags = []string{"odd", "later"}
				}
				if _, err := c.Set(bg, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)), cache.SetOptions{Tags: tags}); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := c.InvalidateTag(bg, "even"); n != 5 || err != nil {
				t.Fatalf("InvalidateTag = %d, %v", n, err)
			}
			cl.Set(bg, "a", []byte("x"), cache.SetOptions{})
			cl.Set(bg, "b", []byte("x"), cache.SetOptions{})
			if n, err := cl.Clear(bg); n != 2 || err != nil {
				t.Fatalf("Clear = %d, %v", n, err)
			}
			if snap {
				if err := m.Snapshot(bg, sp.Journal()); err != nil {
					t.Fatal(err)
				}
			}
			stop()

			sp2, _, _ := running(t, dir, opts)
			c2, _ := sp2.Use("p", copts)
			cl2, _ := sp2.Use("cl", copts)
			if n, err := c2.Add(bg, "n", 1, cache.AddOptions{}); n != 47 || err != nil {
				t.Fatalf("Add after restart = %d, %v; want 47", n, err)
			}
			if _, err := c2.Add(bg, "plain", 1, cache.AddOptions{}); !errors.Is(err, cache.ErrNotCounter) {
				t.Fatalf("Add to the plain value after restart = %v; want ErrNotCounter", err)
			}
			for i := range 10 {
				v, ok, _ := c2.GetInto(nil, fmt.Sprint("k", i))
				if i%2 == 0 && ok {
					t.Fatalf("k%d, removed by InvalidateTag, came back", i)
				}
				if i%2 == 1 && (!ok || string(v) != fmt.Sprint("v", i)) {
					t.Fatalf("k%d = %q, %v after restart", i, v, ok)
				}
			}
			if keys, _ := cl2.Keys(bg); len(keys) != 0 {
				t.Fatalf("a cleared cache came back with %v", keys)
			}
			if n, err := c2.InvalidateTag(bg, "later"); n != 5 || err != nil {
				t.Fatalf("InvalidateTag after restart = %d, %v; want the 5 entries tagged before it", n, err)
			}
			if err := sp2.Verify(bg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRestartKeepsLoaderOptions: a persistent cache's loader options
// (StaleFor and the rest) are in its definition's record: after a restart
// Use with the same options finds the cache, not a conflict.
func TestRestartKeepsLoaderOptions(t *testing.T) {
	dir := t.TempDir()
	opts := persist.Options{Logger: quiet()}
	o := cache.Options{Persist: true, Durability: cache.Always, Expire: time.Hour, StaleFor: time.Minute, FailSafeFor: time.Hour,
		SoftTimeout: time.Millisecond, HardTimeout: time.Second, RefreshAhead: 0.25, NotFoundExpire: 3 * time.Second}
	sp, _, stop := running(t, dir, opts)
	c, err := sp.Use("lo", o)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := sp.Use("plain", cache.Options{Persist: true, Durability: cache.Always})
	c.Set(bg, "k", []byte("v"), cache.SetOptions{})
	plain.Set(bg, "k", []byte("v"), cache.SetOptions{})
	stop()
	sp2, _, _ := running(t, dir, opts)
	if got, ok := sp2.Lookup("lo"); !ok || got != o {
		t.Fatalf("after restart Lookup = %+v, %v; want %+v", got, ok, o)
	}
	if _, err := sp2.Use("lo", o); err != nil {
		t.Fatalf("Use with the options after restart: %v", err)
	}
	if _, err := sp2.Use("plain", cache.Options{Persist: true, Durability: cache.Always}); err != nil {
		t.Fatalf("Use of a cache without loader options after restart: %v", err)
	}
}

// TestRestartKeepsFailSafeValues: a value past its deadline that its cache
// still keeps (FailSafeFor) survives a restart, from the log and from a
// snapshot, expired as it was: the fail-safe serves it when the loader fails,
// no Get takes it as fresh. A cache that keeps nothing loses it, as before.
func TestRestartKeepsFailSafeValues(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		dir := t.TempDir()
		opts := persist.Options{Logger: quiet()}
		keep := cache.Options{Persist: true, Durability: cache.Always, FailSafeFor: time.Hour}
		plain := cache.Options{Persist: true, Durability: cache.Always}
		sp, m, stop := running(t, dir, opts)
		kc, _ := sp.Use("keep", keep)
		pc, _ := sp.Use("plain", plain)
		for _, c := range []*cache.Cache{kc, pc} {
			if _, err := c.Set(bg, "k", []byte("last good"), cache.SetOptions{Expire: 20 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		if snapshot {
			if err := m.Snapshot(bg, sp.Journal()); err != nil {
				t.Fatal(err)
			}
		}
		stop()
		sp2, m2, _ := running(t, dir, opts)
		if snapshot && m2.Recovery().SnapshotEntries == 0 {
			t.Fatal("no snapshot was read")
		}
		kc2, _ := sp2.Use("keep", keep)
		pc2, _ := sp2.Use("plain", plain)
		if v, ok, _ := kc2.GetInto(nil, "k"); ok {
			t.Fatalf("snapshot %v: an expired value came back fresh: %q", snapshot, v)
		}
		down := func(context.Context, string) ([]byte, error) { return nil, errors.New("backend down") }
		if v, err := kc2.Get(bg, "k", down); err != nil || string(v) != "last good" {
			t.Fatalf("snapshot %v: fail-safe after the restart = %q, %v; want the kept value", snapshot, v, err)
		}
		if v, err := pc2.Get(bg, "k", down); err == nil {
			t.Fatalf("snapshot %v: a cache that keeps nothing served %q after the restart", snapshot, v)
		}
	}
}
