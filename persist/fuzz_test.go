package persist_test

import (
	"context"
	"errors"
	"flag"
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
	m.Snapshot(bg, sp.Journal())
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
//
// checkpoint is the sidecar's two slots back to back (the first 68 bytes go
// at offset 0, the rest at 512, as the file holds them): the zeros between
// would only make every input 1 KiB longer to mutate and to minimize. Each
// run gets a fresh cache space (a space shared across runs carried the
// caches one run defined into the next: a run's outcome depended on the
// runs before it) and a data directory on tmpfs: on the disk each run cost
// some 15 ms of fsyncs and unlinks, and minimizing a new input (hundreds
// of runs, none counted in execs) held a worker for seconds.
func FuzzRecover(f *testing.F) {
	seg, snap, ck := validFiles(f)
	ck = append(ck[:ckptLen:ckptLen], ck[ckptSlot:ckptSlot+ckptLen]...)
	f.Add(seg, snap, ck, false)
	f.Add(seg, snap, ck, true)
	f.Add(seg, []byte{}, ck, false)
	f.Add(seg[:len(seg)/2], snap, ck, false)
	f.Add(seg, snap, []byte{}, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte("C2SNAP01"), ck[:50], true)
	f.Fuzz(func(t *testing.T, segment, snapshot, checkpoint []byte, salvage bool) {
		dir := fuzzDir(t)
		os.MkdirAll(filepath.Join(dir, "wal"), 0o700)
		os.WriteFile(filepath.Join(dir, "wal", "00000000000000000001"), segment, 0o600)
		if len(snapshot) > 0 {
			os.WriteFile(filepath.Join(dir, "snapshot"), snapshot, 0o600)
		}
		if len(checkpoint) > 0 {
			b := checkpoint
			if len(b) > ckptLen {
				b = append(append(make([]byte, 0, ckptSlot+len(b)-ckptLen), b[:ckptLen]...), make([]byte, ckptSlot-ckptLen)...)
				b = append(b, checkpoint[ckptLen:]...)
			}
			os.WriteFile(filepath.Join(dir, "wal", "checkpoint"), b, 0o600)
		}
		m, err := persist.Open(dir, persist.Options{Logger: quiet(), SegmentSize: 4096, Salvage: salvage})
		if err != nil {
			return
		}
		defer m.Close()
		err = m.Replay(context.Background(), space(t, 1<<20).Journal())
		var ce *persist.CorruptError
		if err != nil && errors.As(err, &ce) && (ce.File == "" || ce.Offset < 0) {
			t.Fatalf("CorruptError without a place: %v", err)
		}
	})
}

// The checkpoint format's sizes (checkpoint.go), for FuzzRecover.
const (
	ckptLen  = 68
	ckptSlot = 512
)

// fuzzMinimize bounds the minimizing of each input the fuzzer finds, unless
// -fuzzminimizetime is given. Go's default is 60 s, and its minimizer tries
// every subrange of every argument (quadratic in its length): for
// FuzzRecover's arguments of a few hundred bytes that is tens of thousands
// of runs of Open and Replay, counted in no exec count, and a worker that
// found a new input sat minimizing it for the rest of a 5 or 10 s run (12
// to 30 execs in 10 s, where it otherwise runs some 400 a second). A
// failing input is still reported and written whole or part-minimized.
const fuzzMinimize = "1s"

func boundFuzzMinimize() {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if !set {
		flag.Set("test.fuzzminimizetime", fuzzMinimize)
	}
}

// fuzzDir returns a new directory for one run of a fuzz target, on tmpfs
// (/dev/shm) where there is one, removed at the end of the run.
func fuzzDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "cluster2-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
