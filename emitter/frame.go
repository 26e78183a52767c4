package emitter

import (
	"encoding/binary"
	"fmt"
)

// Frame format constants (see the package doc's diagram). Changing any of
// them changes the frame format: every process of a cluster runs one binary,
// so the format needs no version field, but recordEvent is bumped if it ever
// changes so that a stray record of an older layout is refused.
const (
	// FrameHeaderSize is the fixed part of a frame: sender, flags, name
	// length and target count.
	FrameHeaderSize = 8

	// MaxName is the longest event name, in bytes.
	MaxName = 255

	// MaxPids is the most explicit target pids one frame carries.
	MaxPids = 1<<16 - 1

	// recordEvent is the ring record type of an event frame.
	recordEvent uint32 = 1

	// Frame flags.
	flagMaster  = 1 << 0 // deliver to the master
	flagWorkers = 1 << 1 // deliver to every worker (but the sender)
	flagsKnown  = flagMaster | flagWorkers
)

// frame is a decoded frame. Its slices alias the bytes it was decoded from.
type frame struct {
	from  uint32 // sender pid
	flags uint8
	pids  []byte // npids little-endian u32 pids
	name  []byte
	args  []byte // JSON array text (opaque to the codec)
}

func (f *frame) npids() int { return len(f.pids) / 4 }

func (f *frame) pid(i int) int { return int(binary.LittleEndian.Uint32(f.pids[4*i:])) }

// frameSize returns the encoded size of a frame.
func frameSize(npids, nameLen, argsLen int) int {
	return FrameHeaderSize + 4*npids + nameLen + argsLen
}

// appendFrame appends the encoding of a frame to dst. The caller checked the
// name (1..MaxName bytes) and the pid count (at most MaxPids).
func appendFrame(dst []byte, from uint32, flags uint8, pids []int, name string, args []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, from)
	dst = append(dst, flags, uint8(len(name)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(pids)))
	for _, p := range pids {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(p))
	}
	dst = append(dst, name...)
	return append(dst, args...)
}

// parseFrame decodes b, which must hold exactly one frame. The result
// aliases b. A frame that is too short for its counts, has unknown flags or
// an empty name returns ErrCorrupt.
func parseFrame(b []byte) (frame, error) {
	if len(b) < FrameHeaderSize {
		return frame{}, fmt.Errorf("%w: %d-byte frame", ErrCorrupt, len(b))
	}
	f := frame{from: binary.LittleEndian.Uint32(b), flags: b[4]}
	nameLen := int(b[5])
	npids := int(binary.LittleEndian.Uint16(b[6:]))
	if f.flags&^flagsKnown != 0 {
		return frame{}, fmt.Errorf("%w: flags %#x", ErrCorrupt, f.flags)
	}
	if nameLen == 0 {
		return frame{}, fmt.Errorf("%w: empty event name", ErrCorrupt)
	}
	end := FrameHeaderSize + 4*npids
	if len(b) < end+nameLen {
		return frame{}, fmt.Errorf("%w: %d bytes for %d pids and a %d-byte name", ErrCorrupt, len(b), npids, nameLen)
	}
	f.pids = b[FrameHeaderSize:end:end]
	f.name = b[end : end+nameLen : end+nameLen]
	f.args = b[end+nameLen : len(b) : len(b)]
	return f, nil
}
