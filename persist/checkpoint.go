package persist

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Checkpoints tell recovery where the log's durable end is: how far it must
// find the log whole. See the package doc (Recovery) for the rule; this is
// the format. A slot is written in two places:
//
//   - in the tail of the segment being written (its last tailLen bytes,
//     which entries never reach while it is written; cut off with the zeros
//     when the segment is cut back to its data): by every sync, so that the
//     one fdatasync of the segment makes its data and the slot naming it
//     durable together;
//   - in the sidecar DIR/wal/checkpoint: when a segment is created (so a
//     missing last segment is noticed), when the log goes idle (settle), at
//     Open and at Close (the segment's tail is cut off then).
//
// Both hold two slots, written alternately (slot seq%2), so that a torn
// write of one leaves the other whole; the newest whole slot of the four
// (sidecar, and tail of the last segment) counts.
//
//	slot: ┌──────────┬─────────┬───────┬───────┬────────┬─────────┬────────┬─────────┬──────────┐
//	      │"C2CKPT02"│ nonce 8 │ seq 8 │ seg 8 │ dOff 8 │ dNext 8 │ eOff 8 │ eNext 8 │ crc32c 4 │
//	      └──────────┴─────────┴───────┴───────┴────────┴─────────┴────────┴─────────┴──────────┘
//	nonce: random, chosen when the sidecar is created, in every slot of the log: a value that
//	happens to look like a slot at the end of a cut segment is not one. seg: the segment being
//	written; (dOff, dNext): the offset in it where the data covered by the last completed
//	fdatasync ends, and the index of the entry there (the durable end); (eOff, eNext): the same
//	for the data written. crc32c (Castagnoli) of the 64 bytes before it.
//
// The sidecar's name is not 20 digits: tidwall/wal, and segments(), ignore it.
const (
	ckptName  = "checkpoint"
	ckptMagic = "C2CKPT02"
	ckptSlot  = 512
	ckptLen   = 68
	tailLen   = 2 * ckptSlot // a segment's tail slots
)

// checkpoint is one slot.
type checkpoint struct {
	seq         uint64
	seg         uint64 // first index of the segment
	dOff, dNext uint64 // durable end: offset in seg, index of the entry there
	eOff, eNext uint64 // end of the data written
}

func (c checkpoint) encode(nonce uint64) []byte {
	b := make([]byte, ckptLen)
	copy(b, ckptMagic)
	for i, v := range []uint64{nonce, c.seq, c.seg, c.dOff, c.dNext, c.eOff, c.eNext} {
		binary.LittleEndian.PutUint64(b[8+8*i:], v)
	}
	binary.LittleEndian.PutUint32(b[64:], crc32.Checksum(b[:64], castagnoli))
	return b
}

// decodeCheckpoint decodes a slot and its nonce.
func decodeCheckpoint(b []byte) (checkpoint, uint64, bool) {
	if len(b) < ckptLen || string(b[:8]) != ckptMagic || binary.LittleEndian.Uint32(b[64:]) != crc32.Checksum(b[:64], castagnoli) {
		return checkpoint{}, 0, false
	}
	var v [7]uint64
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	c := checkpoint{v[1], v[2], v[3], v[4], v[5], v[6]}
	if c.seg == 0 || c.dOff > c.eOff || c.dNext < c.seg || c.dNext > c.eNext {
		return checkpoint{}, 0, false
	}
	return c, v[0], true
}

// newestSlot returns the newest whole slot of b (two slots), with nonce
// (any, if want is 0) and, if seg is not 0, naming segment seg.
func newestSlot(b []byte, want, seg uint64) (best checkpoint, nonce uint64, ok bool) {
	for off := 0; off+ckptLen <= len(b) && off < 2*ckptSlot; off += ckptSlot {
		c, n, good := decodeCheckpoint(b[off:])
		if good && (want == 0 || n == want) && (seg == 0 || c.seg == seg) && (!ok || c.seq > best.seq) {
			best, nonce, ok = c, n, true
		}
	}
	return best, nonce, ok
}

// errNoCheckpoint: the log has no checkpoint file.
var errNoCheckpoint = errors.New("no checkpoint")

// readCheckpoint returns the newest whole slot of the sidecar in waldir and
// the log's nonce; errNoCheckpoint if there is no file, a *CorruptError if
// neither slot is whole.
func readCheckpoint(waldir string) (checkpoint, uint64, error) {
	path := filepath.Join(waldir, ckptName)
	b, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{}, 0, errNoCheckpoint
	}
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("persist: checkpoint: %w", err)
	}
	c, nonce, ok := newestSlot(b, 0, 0)
	if !ok {
		return checkpoint{}, 0, &CorruptError{File: path, Offset: 0, Reason: "neither slot of the checkpoint is whole"}
	}
	return c, nonce, nil
}

// readTail returns the newest whole slot in the tail of the segment seg
// (open as f, size bytes) with the log's nonce, if any, and where the
// segment's entries end at the latest (limit): before the tail if it holds
// a slot, else at the end of the file.
func readTail(f *os.File, size int64, nonce, seg uint64) (c checkpoint, limit int64, ok bool) {
	if nonce == 0 || size < tailLen {
		return checkpoint{}, size, false
	}
	b := make([]byte, tailLen)
	if _, err := f.ReadAt(b, size-tailLen); err != nil {
		return checkpoint{}, size, false
	}
	if c, _, ok = newestSlot(b, nonce, seg); !ok {
		return checkpoint{}, size, false
	}
	return c, size - tailLen, true
}

// ckptFile is the open sidecar of a segLog.
type ckptFile struct {
	f *os.File
}

// openCheckpoint opens (creating, 1024 bytes of zeros) the sidecar in
// waldir. A new log's nonce is chosen by newNonce.
func openCheckpoint(waldir string) (*ckptFile, error) {
	path := filepath.Join(waldir, ckptName)
	f, err := openFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persist: checkpoint: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() < 2*ckptSlot {
		// Written zeros, not fallocated ones: a slot overwrites blocks
		// already written, so its fdatasync needs no metadata.
		if _, err = f.WriteAt(make([]byte, 2*ckptSlot-st.Size()), st.Size()); err == nil {
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
	return &ckptFile{f: f}, nil
}

func newNonce() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1 // never 0
}

// write writes c into its slot, without syncing.
func (cf *ckptFile) write(c checkpoint, nonce uint64) error {
	if _, err := cf.f.WriteAt(c.encode(nonce), int64(c.seq%2)*ckptSlot); err != nil {
		return fmt.Errorf("persist: write checkpoint: %w", err)
	}
	return nil
}

func (cf *ckptFile) sync() error {
	if err := fdatasync(cf.f); err != nil {
		return fmt.Errorf("persist: fdatasync checkpoint: %w", err)
	}
	return nil
}

func (cf *ckptFile) close() error { return cf.f.Close() }
