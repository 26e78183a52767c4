package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The checkpoint (DIR/wal/checkpoint) tells recovery where the log's durable
// end is: how far it must find the log whole. See the package doc (Recovery)
// for the rule; this is the format.
//
//	file: 1024 bytes, two slots of 512 (one sector each); a write goes to slot seq%2,
//	so a torn write of one leaves the other whole.
//	slot: ┌──────────┬───────┬───────┬───────┬─────────┬───────┬─────────┬──────────┐
//	      │"C2CKPT01"│ seq 8 │ seg 8 │ dOff 8│ dNext 8 │ eOff 8│ eNext 8 │ crc32c 4 │
//	      └──────────┴───────┴───────┴───────┴─────────┴───────┴─────────┴──────────┘
//	seg: the first index of the segment written when the slot was; (dOff, dNext): the
//	offset in it where the data covered by the last completed fdatasync ends, and the
//	index of the entry there; (eOff, eNext): the same for the data written, whose
//	fdatasync runs alongside the checkpoint's. crc32c (Castagnoli) of the 56 bytes before.
//
// The name is not 20 digits: tidwall/wal, and segments(), ignore it.
const (
	ckptName  = "checkpoint"
	ckptMagic = "C2CKPT01"
	ckptSlot  = 512
	ckptLen   = 60
)

// checkpoint is one slot.
type checkpoint struct {
	seq         uint64
	seg         uint64 // first index of the segment
	dOff, dNext uint64 // durable end: offset in seg, index of the entry there
	eOff, eNext uint64 // end of the data written (being synced with this slot)
}

func (c checkpoint) encode() []byte {
	b := make([]byte, ckptLen)
	copy(b, ckptMagic)
	for i, v := range []uint64{c.seq, c.seg, c.dOff, c.dNext, c.eOff, c.eNext} {
		binary.LittleEndian.PutUint64(b[8+8*i:], v)
	}
	binary.LittleEndian.PutUint32(b[56:], crc32.Checksum(b[:56], castagnoli))
	return b
}

func decodeCheckpoint(b []byte) (checkpoint, bool) {
	if len(b) < ckptLen || string(b[:8]) != ckptMagic || binary.LittleEndian.Uint32(b[56:]) != crc32.Checksum(b[:56], castagnoli) {
		return checkpoint{}, false
	}
	var v [6]uint64
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	c := checkpoint{v[0], v[1], v[2], v[3], v[4], v[5]}
	if c.seg == 0 || c.dOff > c.eOff || c.dNext < c.seg || c.dNext > c.eNext {
		return checkpoint{}, false
	}
	return c, true
}

// errNoCheckpoint: the log has no checkpoint file.
var errNoCheckpoint = errors.New("no checkpoint")

// readCheckpoint returns the newest whole slot of the checkpoint in waldir;
// errNoCheckpoint if there is no file, a *CorruptError if neither slot is
// whole.
func readCheckpoint(waldir string) (checkpoint, error) {
	path := filepath.Join(waldir, ckptName)
	b, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{}, errNoCheckpoint
	}
	if err != nil {
		return checkpoint{}, fmt.Errorf("persist: checkpoint: %w", err)
	}
	var best checkpoint
	found := false
	for off := 0; off+ckptLen <= len(b) && off < 2*ckptSlot; off += ckptSlot {
		if c, ok := decodeCheckpoint(b[off:]); ok && (!found || c.seq > best.seq) {
			best, found = c, true
		}
	}
	if !found {
		return checkpoint{}, &CorruptError{File: path, Offset: 0, Reason: "neither slot of the checkpoint is whole"}
	}
	return best, nil
}

// ckptFile is the open checkpoint file of a segLog.
type ckptFile struct {
	f    *os.File
	last checkpoint // the slot written last
}

// openCheckpoint opens (creating, 1024 bytes) the checkpoint file in waldir.
// The caller writes a slot before relying on it.
func openCheckpoint(waldir string, last checkpoint) (*ckptFile, error) {
	path := filepath.Join(waldir, ckptName)
	f, err := openFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persist: checkpoint: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() < 2*ckptSlot {
		if err = preallocate(f, st.Size(), 2*ckptSlot); err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = syncDir(waldir)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("persist: checkpoint: %w", err)
	}
	return &ckptFile{f: f, last: last}, nil
}

// write writes c (its seq the next one) into its slot, without syncing.
func (cf *ckptFile) write(c checkpoint) error {
	c.seq = cf.last.seq + 1
	if _, err := cf.f.WriteAt(c.encode(), int64(c.seq%2)*ckptSlot); err != nil {
		return fmt.Errorf("persist: write checkpoint: %w", err)
	}
	cf.last = c
	return nil
}

func (cf *ckptFile) sync() error {
	if err := fdatasync(cf.f); err != nil {
		return fmt.Errorf("persist: fdatasync checkpoint: %w", err)
	}
	return nil
}

func (cf *ckptFile) close() error { return cf.f.Close() }
