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

	// MaxHost is the longest host id (Emitter.Host, Event.Host), in bytes.
	MaxHost = 255

	// recordEvent is the ring record type of an event frame.
	recordEvent uint32 = 1

	// recordHosts is a worker's request to its master for an event to
	// every host: an 8-byte little-endian sequence number, then the event's
	// frame (its flags and pids are the worker's local targets, routed as a
	// recordEvent's). The master routes the frame, publishes it to the
	// backplane and answers with a recordAck of the same sequence.
	recordHosts uint32 = 2

	// recordAck is the master's answer to a recordHosts: the 8-byte
	// sequence, a one-byte code (ackPublished, ackNoBackplane,
	// ackFailed) and the error's text (UTF-8, the rest; empty when
	// published).
	recordAck uint32 = 3

	// Frame flags.
	flagMaster  = 1 << 0 // deliver to the master
	flagWorkers = 1 << 1 // deliver to every worker (but the sender)
	flagOrigin  = 1 << 2 // the frame came from another host: hostLen u8 and the host id follow the pids
	flagsKnown  = flagMaster | flagWorkers | flagOrigin
)

// The codes of a recordAck.
const (
	ackPublished   = 0
	ackNoBackplane = 1
	ackFailed      = 2
)

// frame is a decoded frame. Its slices alias the bytes it was decoded from.
type frame struct {
	from  uint32 // sender pid
	flags uint8
	pids  []byte // npids little-endian u32 pids
	host  []byte // flagOrigin: the host the event came from (1..MaxHost bytes); nil otherwise
	name  []byte
	args  []byte // JSON array text (opaque to the codec)
}

func (f *frame) npids() int { return len(f.pids) / 4 }

func (f *frame) pid(i int) int { return int(binary.LittleEndian.Uint32(f.pids[4*i:])) }

// frameSize returns the encoded size of a frame; hostLen is 0 for a frame
// without flagOrigin.
func frameSize(npids, hostLen, nameLen, argsLen int) int {
	n := FrameHeaderSize + 4*npids + nameLen + argsLen
	if hostLen > 0 {
		n += 1 + hostLen
	}
	return n
}

// appendFrame appends the encoding of a frame to dst: with flagOrigin and
// host when host is not empty. The caller checked the name (1..MaxName
// bytes), the host (at most MaxHost bytes) and the pid count (at most
// MaxPids).
func appendFrame(dst []byte, from uint32, flags uint8, pids []int, host, name string, args []byte) []byte {
	if host != "" {
		flags |= flagOrigin
	}
	dst = binary.LittleEndian.AppendUint32(dst, from)
	dst = append(dst, flags, uint8(len(name)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(pids)))
	for _, p := range pids {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(p))
	}
	if host != "" {
		dst = append(dst, uint8(len(host)))
		dst = append(dst, host...)
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
	if f.flags&flagOrigin != 0 {
		hostLen := int(b[end])
		if hostLen == 0 || len(b) < end+1+hostLen+nameLen {
			return frame{}, fmt.Errorf("%w: %d bytes for %d pids, a %d-byte host and a %d-byte name", ErrCorrupt, len(b), npids, hostLen, nameLen)
		}
		f.host = b[end+1 : end+1+hostLen : end+1+hostLen]
		end += 1 + hostLen
	}
	f.name = b[end : end+nameLen : end+nameLen]
	f.args = b[end+nameLen : len(b) : len(b)]
	return f, nil
}
