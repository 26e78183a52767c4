package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// segLog is the write-ahead log: a directory of segment files, each named by
// the index of its first entry (20 digits) and holding entries (uvarint
// length │ record) back to back.
//
// The file a writer appends to is preallocated (fallocate, or zeros written
// where the file system cannot) to its full size before its first entry, so
// that an append never changes the file's size or block map: fdatasync then
// writes the data and a cache flush, without a journal commit of the inode,
// which measured 150 µs against 200 µs for appending to a growing file (see
// docs/cache.md). Behind the last entry the file reads as zeros; an entry
// never starts with a zero byte (no record is empty), so the first zero byte
// where an entry should start ends the log. A segment is cut back to its data
// and fsynced when the next one is started, so only the last segment has a
// zero tail.
//
// Crash story. Entries are written in order with pwrite and acknowledged
// (Always) only after an fdatasync that covers them, which also covers every
// byte before them. So after a crash of the machine, everything acknowledged
// is a prefix of the last segment, and behind it there can be: zeros; a torn
// entry (its length runs past the end, or its checksum fails) followed by
// zeros; or, because the kernel may write dirty pages back in any order,
// zeros followed by later entries that reached the disk. None of those were
// acknowledged: repairTail cuts them off and reports it. A zero hole in any
// other segment is damage (that segment was fsynced whole before the next
// one began).
//
// segLog is not safe for concurrent use: the Manager serializes it.
type segLog struct {
	dir     string
	segSize int64
	segs    []segment // every segment, in index order; the last is written
	f       *os.File  // the last segment, open for writing
	off     int64     // where the next entry goes in f (the end of its data)
	alloc   int64     // f's preallocated size
	next    uint64    // the index the next entry gets
	dirty   bool      // written since the last sync
	buf     []byte    // entries added since the last flush
	pending int       // how many
}

// errHole reports zeros where an entry should start, followed by more data.
var errHole = errors.New("zeros where an entry should start, with data after them")

func segPath(dir string, index uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d", index))
}

// openLog opens the log in dir for appending, creating its first segment if
// there is none. The caller cut any torn tail first (repairTail): the last
// segment is read up to the first zero byte where an entry should start.
func openLog(dir string, segSize int64) (*segLog, error) {
	l := &segLog{dir: dir, segSize: segSize}
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return l, l.startSegment(1, 0)
	}
	l.segs = segs
	return l, l.reopenLast()
}

// reopenLast opens the last segment for appending after its last entry.
func (l *segLog) reopenLast() error {
	last := l.segs[len(l.segs)-1]
	n, end, err := countEntries(last.path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(last.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.off, l.alloc, l.next = f, end, st.Size(), last.index+uint64(n)
	if l.alloc < l.segSize {
		if err := preallocate(f, l.alloc, l.segSize); err != nil {
			f.Close()
			return err
		}
		l.alloc = l.segSize
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// countEntries reads the segment at path up to its end (the end of the file
// or the zero tail) and returns its entries and where they end.
func countEntries(path string) (n int, end int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	er := newEntryReader(f)
	for {
		_, off, err := er.next()
		if err != nil {
			if err == io.EOF {
				return n, off, nil
			}
			return 0, 0, &CorruptError{File: path, Offset: off, Reason: err.Error()}
		}
		n++
	}
}

// startSegment syncs and closes the current segment (cut back to its data),
// then creates the segment whose first entry is index, preallocated to
// max(segSize, need) bytes, and makes its name durable.
func (l *segLog) startSegment(index uint64, need int64) error {
	if l.f != nil {
		if err := l.f.Truncate(l.off); err != nil {
			return fmt.Errorf("persist: cut segment: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("persist: fsync segment: %w", err)
		}
		l.f.Close()
		l.f = nil
	}
	path := segPath(l.dir, index)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("persist: new segment: %w", err)
	}
	size := max(l.segSize, need)
	if err := preallocate(f, 0, size); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("persist: preallocate segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("persist: fsync segment: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("persist: fsync log directory: %w", err)
	}
	l.segs = append(l.segs, segment{index: index, path: path})
	l.f, l.off, l.alloc, l.next, l.dirty = f, 0, size, index, false
	return nil
}

// preallocate makes f's bytes [from, to) allocated zeros.
func preallocate(f *os.File, from, to int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, from, to-from)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := from; off < to; {
		n := min(int64(len(zeros)), to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// add appends an entry for the record that encode would make of the
// arguments; flush writes the entries added.
func (l *segLog) add(op uint8, dur uint8, name string, key, value []byte, exp int64) {
	size := recHeader + len(name) + len(key) + len(value)
	l.buf = binary.AppendUvarint(l.buf, uint64(size))
	l.buf = encodeOp(l.buf, op, dur, name, key, value, exp)
	l.pending++
}

// flush writes the entries added since the last flush, in one write, into the
// current segment, or a new one when they do not fit. It returns how many
// entries and bytes it wrote. On error the entries are dropped and the log
// must not be written again (the Manager stops).
func (l *segLog) flush() (n, bytes int, err error) {
	if l.pending == 0 {
		return 0, 0, nil
	}
	n, bytes = l.pending, len(l.buf)
	defer func() { l.buf, l.pending = l.buf[:0], 0 }()
	if l.off+int64(bytes) > l.alloc {
		if err := l.startSegment(l.next, int64(bytes)); err != nil {
			return 0, 0, err
		}
	}
	if _, err := l.f.WriteAt(l.buf, l.off); err != nil {
		return 0, 0, fmt.Errorf("persist: write log: %w", err)
	}
	l.off += int64(bytes)
	l.next += uint64(n)
	l.dirty = true
	if cap(l.buf) > 4<<20 { // do not keep a huge batch's buffer
		l.buf = nil
	}
	return n, bytes, nil
}

// sync makes every entry written durable.
func (l *segLog) sync() error {
	if !l.dirty {
		return nil
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("persist: fdatasync log: %w", err)
	}
	l.dirty = false
	return nil
}

// lastIndex returns the index of the last entry written (0: none ever).
func (l *segLog) lastIndex() uint64 { return l.next - 1 }

// truncateFront removes the segments all of whose entries have indexes below
// index. The segment being written is kept.
func (l *segLog) truncateFront(index uint64) error {
	k := 0
	for k+1 < len(l.segs) && l.segs[k+1].index <= index {
		if err := os.Remove(l.segs[k].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		k++
	}
	if k == 0 {
		return nil
	}
	l.segs = append(l.segs[:0], l.segs[k:]...)
	return syncDir(l.dir)
}

// truncateAt drops the entries from the one at offset off of segment path,
// whose index is index, on (and every later segment), and appends after what
// is left: the salvage of damage found by the replay.
func (l *segLog) truncateAt(path string, off int64, index uint64) error {
	k := -1
	for i, s := range l.segs {
		if s.path == path {
			k = i
		}
	}
	if k < 0 {
		return fmt.Errorf("persist: salvage: %s is not a segment of the log", path)
	}
	l.f.Close()
	l.f = nil
	for _, s := range l.segs[k+1:] {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	l.segs = l.segs[:k+1]
	if err := os.Truncate(path, off); err != nil {
		return err
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	if err := l.reopenLast(); err != nil {
		return err
	}
	if l.next != index {
		return fmt.Errorf("persist: salvage: %s holds %d entries up to offset %d; want %d", path, l.next-l.segs[k].index, off, index-l.segs[k].index)
	}
	return nil
}

// close cuts the segment being written back to its data, syncs and closes
// the log.
func (l *segLog) close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Truncate(l.off)
	if err == nil {
		err = l.f.Sync()
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
