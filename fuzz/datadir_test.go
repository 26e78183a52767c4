package fuzz_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// strictRecovery checks the recovery contract of issue 12 items 11 and 12,
// which persist keeps since its checkpoint (h/persist): the log knows its
// durable end, so damage before it (or a missing segment, or a missing
// snapshot the log needs) stops Open or Replay with a CorruptError unless
// Salvage was asked for; without an error every acknowledged record is
// there. False checks the older contract only: an error wrapping ErrCorrupt,
// or the state after a prefix of the writes that holds every record before
// the damage (a torn-looking cut could drop acknowledged records after it;
// a lost middle segment went unnoticed). The seeds named item11-* and
// item12-* in testdata/fuzz/FuzzDataDir fail with it on the persist of
// before the checkpoint (checked against bb56964's).
const strictRecovery = true

// dirOp is one write of the sequence the base directory was made from.
type dirOp struct {
	key, val string
	del      bool
}

// entrySpan is where one log entry of the base directory lies.
type entrySpan struct {
	file     int   // index into baseDir.files
	end      int64 // offset one past the entry
	index    uint64
	fromSnap bool // the entry's index is covered by the snapshot
}

// baseDir is a data directory written by a real Manager, and what is in it.
type baseDir struct {
	names   []string // relative to the directory: "snapshot" first, the segments in order, then the checkpoint if any
	files   [][]byte
	lastSeg int // index of the last segment in files
	ops     []dirOp
	snapAt  int // ops[:snapAt] are in the snapshot
	spans   []entrySpan
	states  []map[string]string // states[j]: the cache after ops[:j]
	keys    []string
	segSize int
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tmpfsDir returns a temporary directory on /dev/shm when there is one: the
// Manager fsyncs as it opens a log, and a disk's fsyncs would make the
// fuzzing crawl.
func tmpfsDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "cluster2-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freshSpace(tb testing.TB) (*shm.Arena, *cache.Space) {
	tb.Helper()
	a, err := shm.Create(shm.Options{Size: 4 << 20, Slots: 4})
	if err != nil {
		tb.Fatal(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 2 << 20, Shards: 2})
	if err != nil {
		a.Close()
		tb.Fatal(err)
	}
	return a, sp
}

func newBaseDir(tb testing.TB) *baseDir {
	ctx := context.Background()
	b := &baseDir{segSize: 4096, snapAt: 40}
	for i := range 150 {
		k := fmt.Sprint("k", i%60)
		switch {
		case i%11 == 10: // a key set 5 writes ago: every Del is logged
			b.ops = append(b.ops, dirOp{key: fmt.Sprint("k", (i-5)%60), del: true})
		default:
			b.ops = append(b.ops, dirOp{key: k, val: fmt.Sprintf("value %d %s", i, bytes.Repeat([]byte{'x'}, 100+i))})
		}
	}
	dir := tb.TempDir()
	a, sp := freshSpace(tb)
	defer a.Close()
	defer sp.Close()
	m, err := persist.Open(dir, persist.Options{Logger: quiet(), SegmentSize: b.segSize})
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Replay(ctx, sp.Journal()); err != nil {
		tb.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		tb.Fatal(err)
	}
	for i, op := range b.ops {
		if i == b.snapAt {
			if err := m.Snapshot(ctx, sp.Journal()); err != nil {
				tb.Fatal(err)
			}
		}
		if op.del {
			_, _, err = c.Del(ctx, op.key)
		} else {
			_, err = c.Set(ctx, op.key, []byte(op.val), cache.SetOptions{})
		}
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			tb.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	m.Close()

	// Read the files back and find every entry.
	snap, err := os.ReadFile(filepath.Join(dir, "snapshot"))
	if err != nil {
		tb.Fatal(err)
	}
	snapIndex := binary.LittleEndian.Uint64(snap[8:])
	b.names, b.files = []string{"snapshot"}, [][]byte{snap}
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "0*"))
	slices.Sort(segs)
	next := b.snapAt
	for _, path := range segs {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		first, _ := strconv.ParseUint(filepath.Base(path), 10, 64)
		b.names = append(b.names, filepath.Join("wal", filepath.Base(path)))
		b.files = append(b.files, data)
		for off, index := 0, first; off < len(data) && data[off] != 0; index++ {
			n, w := binary.Uvarint(data[off:])
			rec := data[off+w : off+w+int(n)]
			off += w + int(n)
			b.spans = append(b.spans, entrySpan{file: len(b.files) - 1, end: int64(off), index: index, fromSnap: index <= snapIndex})
			if index <= snapIndex {
				continue
			}
			nlen, klen := int(binary.LittleEndian.Uint16(rec[6:])), int(binary.LittleEndian.Uint16(rec[8:]))
			if key := string(rec[24+nlen : 24+nlen+klen]); next >= len(b.ops) || key != b.ops[next].key {
				tb.Fatalf("log entry %d (key %q) is not write %d of the sequence", index, key, next)
			}
			next++
		}
	}
	b.lastSeg = len(b.files) - 1
	if ck, err := os.ReadFile(filepath.Join(dir, "wal", "checkpoint")); err == nil {
		b.names = append(b.names, filepath.Join("wal", "checkpoint"))
		b.files = append(b.files, ck)
	}
	if next != len(b.ops) || len(segs) < 3 {
		tb.Fatalf("the log holds writes %d to %d of %d in %d segments; want all after the snapshot in 3 or more",
			b.snapAt, next, len(b.ops), len(segs))
	}
	state := map[string]string{}
	b.states = append(b.states, maps.Clone(state))
	keys := map[string]bool{}
	for _, op := range b.ops {
		keys[op.key] = true
		if op.del {
			delete(state, op.key)
		} else {
			state[op.key] = op.val
		}
		b.states = append(b.states, maps.Clone(state))
	}
	b.keys = slices.Sorted(maps.Keys(keys))
	return b
}

// dirDamage is what FuzzDataDir does to the base directory.
type dirDamage struct {
	file    int // index into baseDir.files
	kind    int // 0 xor, 1 zero, 2 truncate, 3 remove, 4 overwrite
	off     int64
	data    []byte
	salvage bool
}

func (d dirDamage) String() string {
	return fmt.Sprintf("%s of file %d at %d (%d bytes), salvage %v",
		[]string{"xor", "zero", "truncate", "remove", "overwrite"}[d.kind], d.file, d.off, len(d.data), d.salvage)
}

// decodeDamage reads a damage from the input: in[0] the file (0xff the last
// segment, 0xfe one in the middle, 0xfd the last file; otherwise modulo the
// number of files), in[1] the kind (low 3 bits, modulo 5) and salvage (top
// bit), in[2:4] the offset (modulo the file's size + 1), in[4:] the bytes.
func decodeDamage(b *baseDir, in []byte) dirDamage {
	in = append(in, make([]byte, max(0, 5-len(in)))...)
	d := dirDamage{file: int(in[0]) % len(b.files), kind: int(in[1]&7) % 5, salvage: in[1]&0x80 != 0}
	switch in[0] { // named files, whatever their number (the seeds use them)
	case 0xff:
		d.file = b.lastSeg
	case 0xfe:
		d.file = (b.lastSeg + 1) / 2 // a segment in the middle
	case 0xfd:
		d.file = len(b.files) - 1 // the checkpoint, when there is one
	}
	size := len(b.files[d.file])
	d.off = int64(binary.LittleEndian.Uint16(in[2:])) % int64(size+1)
	d.data = in[4:]
	if len(d.data) > 512 {
		d.data = d.data[:512]
	}
	return d
}

// apply writes the base directory, damaged, into dir.
func (b *baseDir) apply(tb testing.TB, dir string, d dirDamage) {
	os.MkdirAll(filepath.Join(dir, "wal"), 0o700)
	for i, name := range b.names {
		data := append([]byte(nil), b.files[i]...)
		if i == d.file {
			end := min(int(d.off)+len(d.data), len(data))
			switch d.kind {
			case 0:
				for j := int(d.off); j < end; j++ {
					data[j] ^= d.data[j-int(d.off)]
				}
			case 1:
				clear(data[d.off:end])
			case 2:
				data = data[:d.off]
			case 3:
				continue
			case 4:
				copy(data[d.off:], d.data)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// mustKeep returns how many writes of the sequence come before the damage:
// those a recovery without an error must have kept.
func (b *baseDir) mustKeep(d dirDamage) int {
	if d.file == 0 {
		return 0 // the snapshot comes first: nothing is before its damage (a salvage may keep nothing)
	}
	if d.file > b.lastSeg {
		return len(b.ops) // the checkpoint: every entry is intact, none may go
	}
	n := b.snapAt
	for _, s := range b.spans {
		if s.file > d.file || (s.file == d.file && (d.kind == 3 || s.end > d.off)) {
			break
		}
		if !s.fromSnap {
			n++
		}
	}
	return n
}

// resume returns the number of writes up to the end of file.
func (b *baseDir) resume(file int) int {
	n := b.snapAt
	for _, s := range b.spans {
		if s.file <= file && !s.fromSnap {
			n++
		}
	}
	return n
}

// skipping returns the state after ops[:keep] and then ops[from:].
func (b *baseDir) skipping(keep, from int) map[string]string {
	state := maps.Clone(b.states[keep])
	for _, op := range b.ops[from:] {
		if op.del {
			delete(state, op.key)
		} else {
			state[op.key] = op.val
		}
	}
	return state
}

// FuzzDataDir damages a data directory written by a real Manager and checks
// what Open and Replay make of it; see the package doc and strictRecovery.
func FuzzDataDir(f *testing.F) {
	b := newBaseDir(f)
	f.Add([]byte{0, 0})
	for file := range len(b.files) {
		f.Add([]byte{byte(file), 0, 100, 0, 0xff, 0xff})             // flip bits inside the file
		f.Add([]byte{byte(file), 2, 30, 0})                          // cut
		f.Add([]byte{byte(file), 0x80 | 1, 10, 0, 1, 2, 3, 4})       // zero 4 bytes, salvage
		f.Add([]byte{byte(file), 4, 0xf0, 0x0f, 'g', 'a', 'r', 'b'}) // garbage near the end
	}
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDataDir(t, b, decodeDamage(b, in)) })
}

func fuzzDataDir(t *testing.T, b *baseDir, d dirDamage) {
	ctx := context.Background()
	dir := tmpfsDir(t)
	b.apply(t, dir, d)
	a, sp := freshSpace(t)
	defer a.Close()
	defer sp.Close()
	m, err := persist.Open(dir, persist.Options{Logger: quiet(), SegmentSize: b.segSize, Salvage: d.salvage})
	if err == nil {
		err = m.Replay(ctx, sp.Journal())
		m.Close()
	}
	var ce *persist.CorruptError
	switch {
	case err != nil && errors.As(err, &ce):
		if ce.File == "" || ce.Offset < 0 {
			t.Fatalf("%v: a CorruptError without a place: %v", d, err)
		}
		return
	case err != nil && strictRecovery:
		t.Fatalf("%v: %v; want a *persist.CorruptError (issue 12 items 12 and 16: a missing file is corruption, named as such)", d, err)
	case err != nil && errors.Is(err, cache.ErrCorrupt):
		return // today: the log's writes of a cache whose definition went with the snapshot
	case err != nil:
		t.Fatalf("%v: %v; want nil or an error wrapping ErrCorrupt", d, err)
	}

	got := map[string]string{}
	if o, ok := sp.Lookup("p"); ok {
		c, err := sp.Use("p", o)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range b.keys {
			if v, ok, err := c.GetInto(nil, k); err != nil {
				t.Fatal(err)
			} else if ok {
				got[k] = string(v)
			}
		}
	}
	keep := b.mustKeep(d)
	if strictRecovery && !d.salvage {
		keep = len(b.ops)
	}
	for j := len(b.ops); j >= keep; j-- {
		if maps.Equal(got, b.states[j]) {
			return
		}
	}
	if !strictRecovery && d.file > 0 && d.file < b.lastSeg {
		// Today a segment in the middle that is missing, or cut or zeroed
		// to its end, goes unnoticed (issue 12 item 12): the writes before
		// the damage and those of the later segments are there.
		if maps.Equal(got, b.skipping(keep, b.resume(d.file))) {
			return
		}
	}
	// Say how far the recovered state goes, for the report.
	best := -1
	for j := range b.states {
		if maps.Equal(got, b.states[j]) {
			best = j
		}
	}
	what := "no prefix of the writes: a wrong value or a resurrected key"
	if best >= 0 {
		what = fmt.Sprintf("the state after %d of %d writes", best, len(b.ops))
	}
	if strictRecovery && !d.salvage {
		t.Fatalf("%v: no error, and the space holds %s: acknowledged (fsynced) writes after the damage were lost "+
			"without a CorruptError (issue 12 item 11: damage before the durable end; item 12: a missing segment)", d, what)
	}
	t.Fatalf("%v: no error, and the space holds %s; every one of the %d writes before the damage must be there", d, what, keep)
}
