package persist

import (
	"io"
	"os"
	"path/filepath"
)

// Bridges for the black-box tests that need a white-box view of the log: an
// internal test (package persist) cannot make a cache space to log, since
// package cache imports persist.

// CkptName is the checkpoint sidecar's name in DIR/wal.
const CkptName = ckptName

// DecodeRecord and AppendRecord are the log record's codec.
var (
	DecodeRecord = decodeRecord
	AppendRecord = appendRecord
)

// Segment is one log segment file: its path and the index of its first
// entry.
type Segment struct {
	Index uint64
	Path  string
}

// Segments lists the log's segment files in waldir in index order.
func Segments(waldir string) ([]Segment, error) {
	segs, err := segments(waldir)
	out := make([]Segment, len(segs))
	for i, s := range segs {
		out[i] = Segment{Index: s.index, Path: s.path}
	}
	return out, err
}

// Entries returns every entry of the segment file at path, as recovery's
// reader reads them (up to the file's end).
func Entries(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	er := newEntryReader(f, st.Size())
	var out [][]byte
	for {
		b, _, err := er.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, append([]byte(nil), b...))
	}
}

// CheckpointEnds returns the durable end and the end of the data (entry
// indexes) that dir's checkpoint sidecar names.
func CheckpointEnds(dir string) (durable, written uint64, err error) {
	ck, _, err := readCheckpoint(filepath.Join(dir, "wal"))
	return ck.dNext, ck.eNext, err
}

// Step does one round of Run's loop by hand: read the journal into the log,
// write the batch, publish Logged; with sync, fdatasync the log and publish
// Durable. Without sync it is a log writer killed between its write and its
// fdatasync.
func (m *LogWriter) Step(sync bool) error {
	if _, err := m.read(&runState{}); err != nil {
		return err
	}
	m.mu.Lock()
	err := m.writeBatchLocked()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.p.Logged(m.p.Position())
	if sync {
		if err := m.sync(); err != nil {
			return err
		}
		m.p.Durable(m.p.Position())
	}
	return nil
}

// Cursor returns the log writer's cursor (nil before Replay or Resume).
func (m *LogWriter) Cursor() Cursor { return m.p }

// Unsynced reports whether the log holds writes no fdatasync covered yet.
func (m *LogWriter) Unsynced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.dirty
}

// Die drops the data directory's lock as the kernel does when the process
// is killed, and leaves everything else as it is.
func (m *LogWriter) Die() { m.lock.Close() }
