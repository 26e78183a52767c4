package persist

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

const (
	snapMagic    = "C2SNAP01"
	snapEndMagic = "C2SNEND1"
	maxRecord    = 64 << 20 // no record is larger: a length beyond it is damage
)

// segment is one segment file of the log.
type segment struct {
	index uint64 // index of its first entry
	path  string
}

// segments lists the log's segment files in index order (names of 20 digits).
func segments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segment
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) != 20 {
			continue
		}
		idx, err := strconv.ParseUint(name, 10, 64)
		if err != nil || idx == 0 {
			continue
		}
		out = append(out, segment{idx, filepath.Join(dir, name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out, nil
}

// entryReader reads uvarint-length-prefixed records up to the end of the
// file or of its data: a zero byte where an entry should start, with only
// zeros after it (the preallocated tail, see segLog).
type entryReader struct {
	r   *bufio.Reader
	off int64 // offset of the next entry
	buf []byte
}

// newEntryReader reads f's first limit bytes (a segment's entries end
// before its checkpoint tail; see readTail), through a buffer of 1 MiB, or
// of limit bytes if that is less (recovery reads every segment at every
// Open: a small one needs no 1 MiB allocated and cleared).
func newEntryReader(f *os.File, limit int64) *entryReader {
	return &entryReader{r: bufio.NewReaderSize(io.NewSectionReader(f, 0, limit), readBuf(limit))}
}

// readBuf is the size of a read buffer for a file of size bytes.
func readBuf(size int64) int { return int(max(min(size, 1<<20), 64)) }

// errTorn marks an entry that ends past the end of the file.
var errTorn = errors.New("entry runs past the end of the file")

// next returns the next entry's bytes and its offset; io.EOF at a clean end
// (the end of the file, or the zero tail), errHole for zeros followed by
// data.
func (er *entryReader) next() ([]byte, int64, error) {
	start := er.off
	first, err := er.r.Peek(1)
	if err == io.EOF {
		return nil, start, io.EOF
	}
	if err == nil && first[0] == 0 {
		return nil, start, er.zeroTail()
	}
	size, err := binary.ReadUvarint(er.r)
	if err != nil {
		return nil, start, errTorn
	}
	n := int64(uvarintLen(size))
	if size > maxRecord {
		return nil, start, fmt.Errorf("entry length %d", size)
	}
	if cap(er.buf) < int(size) {
		er.buf = make([]byte, size)
	}
	er.buf = er.buf[:size]
	if _, err := io.ReadFull(er.r, er.buf); err != nil {
		return nil, start, errTorn
	}
	er.off += n + int64(size)
	return er.buf, start, nil
}

// zeroPage is compared with the file's tail.
var zeroPage = make([]byte, 64<<10)

// zeroTail reads the rest of the file: io.EOF if it is all zeros, errHole if
// not.
func (er *entryReader) zeroTail() error {
	for {
		if er.r.Buffered() == 0 {
			if _, err := er.r.Peek(1); err == io.EOF {
				return io.EOF
			} else if err != nil {
				return err
			}
		}
		chunk, _ := er.r.Peek(min(er.r.Buffered(), len(zeroPage)))
		if !bytes.Equal(chunk, zeroPage[:len(chunk)]) {
			return errHole
		}
		er.r.Discard(len(chunk))
	}
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// repairTail checks the last segment of the log in dir against the
// checkpoint ck (strict: ck is to be trusted; else nothing is held durable)
// and cuts off what a torn write left past the durable end: from the first
// entry that is torn, fails its checksum, or starts with zeros followed by
// data (pages of unsynced writes reach the disk in any order; see segLog)
// to the end. What it cuts is kept in sv. It returns the bytes of data cut
// (0 if none) and the file. Damage before the durable end, a log that ends
// before it, or a missing segment the checkpoint names, is a *CorruptError.
//
// legacy (a directory of the release before checkpoints: not strict) is
// that release's rule: the first bad entry is cut as torn when it runs past
// the end of the file, starts with zeros (a hole), or has only zeros after
// it; an entry failing its checksum with data after it is a *CorruptError.
func repairTail(dir string, ck checkpoint, strict, legacy bool, nonce uint64, sv *salvageDir) (cut int64, file string, err error) {
	segs, err := segments(dir)
	if err != nil {
		return 0, "", err
	}
	strictEnd, strictNext := int64(-1), uint64(0)
	if strict {
		k := len(segs) - 1
		for k >= 0 && segs[k].index > ck.seg {
			k--
		}
		if k < 0 || segs[k].index != ck.seg {
			return 0, "", &CorruptError{File: segPath(dir, ck.seg), Offset: 0,
				Reason: fmt.Sprintf("segment missing: the checkpoint says the log holds entries up to %d, durable, in it", ck.dNext-1)}
		}
		if k == len(segs)-1 {
			strictEnd, strictNext = int64(ck.dOff), ck.dNext
		}
	}
	if len(segs) == 0 {
		return 0, "", nil
	}
	last := segs[len(segs)-1]
	f, err := openFile(last.path, os.O_RDONLY, 0)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	_, limit, _ := readTail(f, st.Size(), nonce, last.index)
	corrupt := func(off int64, reason string) (int64, string, error) {
		return 0, "", &CorruptError{File: last.path, Offset: off, Reason: reason, cut: true}
	}
	er := newEntryReader(f, limit)
	checked := strictEnd < 0
	for index := last.index; ; index++ {
		if !checked && er.off >= strictEnd {
			checked = true
			if er.off != strictEnd || index != strictNext {
				return corrupt(er.off, fmt.Sprintf("entry %d at offset %d; the checkpoint says the durable end is entry %d at offset %d",
					index, er.off, strictNext, strictEnd))
			}
		}
		b, off, err := er.next()
		if err == io.EOF {
			if off < strictEnd {
				return corrupt(off, fmt.Sprintf("the log ends at entry %d, before its durable end (entry %d at offset %d): acknowledged entries are missing",
					index, strictNext, strictEnd))
			}
			return 0, "", nil
		}
		bad := err
		if bad == nil {
			if _, derr := decodeRecord(b); derr != nil {
				bad = errors.New("bad checksum")
			}
		}
		if bad == nil {
			continue
		}
		if off < strictEnd {
			return corrupt(off, fmt.Sprintf("entry %d: %v, before the log's durable end (offset %d): it was acknowledged", index, bad, strictEnd))
		}
		// Past the durable end: nothing from here on was acknowledged.
		f.Close()
		end, derr := dataEnd(last.path)
		if derr != nil {
			return 0, "", derr
		}
		if legacy && bad != errTorn && bad != errHole && end > off+int64(uvarintLen(uint64(len(b))))+int64(len(b)) {
			return corrupt(off, fmt.Sprintf("entry %d: %v, with data after it (a directory of the release before checkpoints: "+
				"only a torn write at the end is cut)", index, bad))
		}
		end = min(end, limit) // not the checkpoint tail
		if _, kerr := sv.keepTail(last.path, off); kerr != nil {
			return 0, "", kerr
		}
		if terr := truncateFile(last.path, off); terr != nil {
			return 0, "", terr
		}
		return max(end-off, 0), last.path, nil
	}
}

// dataEnd returns the offset just past the last non-zero byte of the file.
func dataEnd(path string) (int64, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	for end := st.Size(); end > 0; {
		n := min(end, int64(len(buf)))
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				return end - n + i + 1, nil
			}
		}
		end -= n
	}
	return 0, nil
}

// readSnapshot streams the snapshot at path to fn and returns the log index
// it covers. A missing file is an empty snapshot (index 0).
func readSnapshot(path string, fn func(Mutation) error) (index uint64, count int, err error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	size := int64(1 << 20)
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	r := bufio.NewReaderSize(f, readBuf(size))
	corrupt := func(off int64, reason string) (uint64, int, error) {
		return 0, 0, &CorruptError{File: path, Offset: off, Reason: reason}
	}
	var head [16]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || string(head[:8]) != snapMagic {
		return corrupt(0, "not a cluster2 snapshot (bad magic)")
	}
	index = binary.LittleEndian.Uint64(head[8:])
	off := int64(16)
	var buf []byte
	for {
		peek, err := r.Peek(8)
		if err == nil && string(peek) == snapEndMagic {
			break
		}
		size, err := binary.ReadUvarint(r)
		if err != nil || size > maxRecord {
			return corrupt(off, "truncated or bad entry length (no footer)")
		}
		if cap(buf) < int(size) {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return corrupt(off, "entry runs past the end of the file")
		}
		m, err := decodeRecord(buf)
		if err != nil {
			return corrupt(off, "bad checksum")
		}
		if err := fn(m); err != nil {
			return 0, 0, err
		}
		count++
		off += int64(uvarintLen(size)) + int64(size)
	}
	// Footer: its crc covers every byte before it.
	sum, err := crcPrefix(path, off)
	if err != nil {
		return 0, 0, err
	}
	var foot [20]byte
	if _, err := io.ReadFull(r, foot[:]); err != nil {
		return corrupt(off, "truncated footer")
	}
	if int(binary.LittleEndian.Uint64(foot[8:])) != count || binary.LittleEndian.Uint32(foot[16:]) != sum {
		return corrupt(off, "footer does not match the entries")
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return corrupt(off+20, "bytes after the footer")
	}
	return index, count, nil
}

func crcPrefix(path string, n int64) (uint32, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	if _, err := io.CopyN(h, f, n); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// snapshotWriter writes a snapshot to a temp file; Commit makes it the
// snapshot.
type snapshotWriter struct {
	f     *os.File
	w     *bufio.Writer
	crc   hashWriter
	count uint64
	rec   []byte
	path  string
}

type hashWriter interface {
	io.Writer
	Sum32() uint32
}

func createSnapshot(path string, index uint64) (*snapshotWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".snapshot-*") // O_EXCL: never through a link
	if err != nil {
		return nil, err
	}
	sw := &snapshotWriter{f: f, crc: crc32.New(castagnoli), path: path}
	sw.w = bufio.NewWriterSize(io.MultiWriter(f, sw.crc), 1<<20)
	var head [16]byte
	copy(head[:], snapMagic)
	binary.LittleEndian.PutUint64(head[8:], index)
	sw.w.Write(head[:])
	return sw, nil
}

func (sw *snapshotWriter) add(m Mutation) error {
	sw.rec = appendRecord(sw.rec[:0], m)
	var lb [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(lb[:], uint64(len(sw.rec)))
	sw.w.Write(lb[:n])
	_, err := sw.w.Write(sw.rec)
	sw.count++
	return err
}

// commit writes the footer, fsyncs, renames over the snapshot and fsyncs the
// directory: after it returns, a crash finds the new snapshot whole.
func (sw *snapshotWriter) commit() error {
	if err := sw.w.Flush(); err != nil {
		return sw.abort(err)
	}
	var foot [20]byte
	copy(foot[:], snapEndMagic)
	binary.LittleEndian.PutUint64(foot[8:], sw.count)
	binary.LittleEndian.PutUint32(foot[16:], sw.crc.Sum32())
	if _, err := sw.f.Write(foot[:]); err != nil {
		return sw.abort(err)
	}
	if err := sw.f.Sync(); err != nil {
		return sw.abort(err)
	}
	if err := sw.f.Close(); err != nil {
		return sw.abort(err)
	}
	if err := os.Rename(sw.f.Name(), sw.path); err != nil {
		return sw.abort(err)
	}
	return syncDir(filepath.Dir(sw.path))
}

func (sw *snapshotWriter) abort(err error) error {
	sw.f.Close()
	os.Remove(sw.f.Name())
	return fmt.Errorf("persist: snapshot: %w", err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
