package persist_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
)

// smallTmpfs mounts a tmpfs of size bytes on a fresh directory (unmounted at
// the end) and returns it; it skips the test where mounting is not allowed.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until the file system is full and returns
// its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last pages too
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// syncBuffer is a bytes.Buffer for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A full disk: while the log cannot be written, Sets of persistent caches
// fail with ErrPersistFailing (EverySecond and Always alike, never a
// success), the space says so (Journal().Stats().Failing: ENOSPC) and the log writer
// logs it at ERROR; once space comes back the log writer resumes by itself and
// Sets succeed again; after a restart every acknowledged write is there.
// (Before: Run returned on ENOSPC, EverySecond Sets went on succeeding into
// a journal nobody read, and Always Sets failed until a restart.)
func TestFullDiskRefusesThenResumes(t *testing.T) {
	dir := smallTmpfs(t, "3m")
	var logs syncBuffer
	opts := persist.Options{SegmentSize: 128 << 10, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	sp, _, stop := running(t, dir, opts)
	ev, err := sp.Use("ev", cache.Options{Persist: true, Durability: cache.EverySecond})
	if err != nil {
		t.Fatal(err)
	}
	al, err := sp.Use("al", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{} // cache/key -> value, of every acknowledged Set
	var mu sync.Mutex
	ack := func(c *cache.Cache, k, v string) {
		mu.Lock()
		acked[c.Name()+"/"+k] = v
		mu.Unlock()
	}
	val := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 4<<10) }

	// An Always writer runs all along; it may see ErrNotDurable (it was
	// waiting when the failure began) or ErrPersistFailing, never a false
	// success.
	done := make(chan struct{})
	var alWG sync.WaitGroup
	alWG.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			k := fmt.Sprint("a", i)
			ok, err := al.Set(bg, k, val(i), cache.SetOptions{})
			switch {
			case ok && err == nil:
				ack(al, k, string(val(i)))
			case errors.Is(err, cache.ErrClosed):
				return
			case errors.Is(err, cache.ErrPersistFailing) || errors.Is(err, cache.ErrNotDurable):
				time.Sleep(time.Millisecond)
			default:
				t.Errorf("Always Set = %v, %v", ok, err)
				return
			}
		}
	})

	stopAl := sync.OnceFunc(func() { close(done); alWG.Wait() })
	defer stopAl()
	filler := fill(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	i := 0
	for ; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the log never failed on a full disk")
		}
		k := fmt.Sprint("e", i)
		ok, err := ev.Set(bg, k, val(i), cache.SetOptions{})
		if err == nil && ok {
			ack(ev, k, string(val(i)))
			continue
		}
		if !errors.Is(err, cache.ErrPersistFailing) || ok {
			t.Fatalf("EverySecond Set on a full disk = %v, %v; want false, ErrPersistFailing", ok, err)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("the Set's error does not name the cause: %v", err)
		}
		break
	}
	st := sp.Journal().Stats()
	if !errors.Is(st.Failing, syscall.ENOSPC) || st.FailingSince.IsZero() || st.Failures != 1 {
		t.Fatalf("Journal().Stats() on a full disk = %+v; want Failing ENOSPC", st)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "no space left on device") {
		t.Fatalf("no ERROR logged about the full disk:\n%s", logs.String())
	}
	// It stays refused while the disk is full (the log writer retries).
	for j := range 20 {
		if ok, err := ev.Set(bg, "refused", val(j), cache.SetOptions{}); ok || !errors.Is(err, cache.ErrPersistFailing) {
			t.Fatalf("Set while the disk is full = %v, %v", ok, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok, _ := ev.GetInto(nil, "refused"); ok {
		t.Fatal("a refused Set stored its value")
	}

	// Space comes back: Sets succeed by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		k := fmt.Sprint("e", i)
		ok, err := ev.Set(bg, k, val(i), cache.SetOptions{})
		if ok && err == nil {
			ack(ev, k, string(val(i)))
			break
		}
		if !errors.Is(err, cache.ErrPersistFailing) {
			t.Fatalf("Set after space came back = %v, %v", ok, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sets still refused 10 s after space came back: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for j := range 50 {
		i++
		k := fmt.Sprint("e", i)
		if ok, err := ev.Set(bg, k, val(i), cache.SetOptions{}); !ok || err != nil {
			t.Fatalf("Set %d after the recovery = %v, %v", j, ok, err)
		}
		ack(ev, k, string(val(i)))
	}
	if st := sp.Journal().Stats(); st.Failing != nil || st.Failures != 1 {
		t.Fatalf("Journal().Stats() after the recovery = %+v", st)
	}
	if !strings.Contains(logs.String(), "the log is written again") {
		t.Errorf("the recovery is not logged:\n%s", logs.String())
	}
	stopAl()
	stop()

	opts.Logger = quiet()
	sp2, _, stop2 := running(t, dir, opts)
	defer stop2()
	lost := 0
	for ck, want := range acked {
		name, key, _ := strings.Cut(ck, "/")
		c, err := sp2.Use(name, cache.Options{Persist: true, Durability: map[string]cache.Durability{"ev": cache.EverySecond, "al": cache.Always}[name]})
		if err != nil {
			t.Fatal(err)
		}
		if v, ok, _ := c.GetInto(nil, key); !ok || string(v) != want {
			lost++
		}
	}
	alN := 0
	for ck := range acked {
		if strings.HasPrefix(ck, "al/") {
			alN++
		}
	}
	t.Logf("%d acknowledged writes (%d EverySecond up to the failure at %d, %d Always), %d lost after restart",
		len(acked), len(acked)-alN, i, alN, lost)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost after the full disk and a restart", lost, len(acked))
	}
}

// The first batch after a start can be larger than a whole segment (writers
// went on while the log writer started): it must go into the empty segment,
// grown, not into a new segment of the same index (which failed with "file
// exists", and the log never took a record again).
func TestFirstBatchLargerThanASegment(t *testing.T) {
	dir := t.TempDir()
	sp := space(t, 8<<20)
	m, err := persist.Open(dir, persist.Options{SegmentSize: 4 << 10, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Replay(bg, sp.Journal()); err != nil {
		t.Fatal(err)
	}
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.EverySecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 { // ~16 KiB of records before Run reads any
		if _, err := c.Set(bg, fmt.Sprint("k", i), bytes.Repeat([]byte{'v'}, 100), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	ok := xtestingEventually(5*time.Second, func() bool { return sp.Journal().Stats().Records >= 101 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := sp.Journal().Stats(); !ok || st.Failures != 0 {
		t.Fatalf("the first batch of %d records: %+v", 101, st)
	}
	m.Close()
	sp2, _, stop := running(t, dir, persist.Options{SegmentSize: 4 << 10, Logger: quiet()})
	defer stop()
	c2, err := sp2.Use("p", cache.Options{Persist: true, Durability: cache.EverySecond})
	if err != nil {
		t.Fatal(err)
	}
	if n := c2.Stats().Entries; n != 100 {
		t.Fatalf("%d of 100 keys after a restart", n)
	}
}

func xtestingEventually(d time.Duration, f func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}
