package emitter

import (
	"sync/atomic"
	"unsafe"

	"github.com/cluster2/cluster2/shm"
)

// Region format constants (see the package doc's diagram).
const (
	// RegionName is the name of the emitter's region in the arena.
	RegionName = "cluster2.emitter"

	regionMagic uint64 = 0x31544d45324c4322 // "\"C2LEMT1" little-endian: marks an initialized region
	// regionVersion 2 (issue 17, events across hosts): the host block after
	// the slot entries (the host id every process of the cluster puts in
	// Event.Host), frames with flagOrigin (a host id after the pids), and
	// the record types recordHosts (worker → master) and recordAck
	// (master → worker). Version 1 had none of them.
	regionVersion uint32 = 2

	regionHeaderSize = 64
	slotEntrySize    = 64
	hostBlockSize    = 1 + MaxHost // length u8, then the host id's bytes
)

// RegionVersion is the version of the emitter region's format (its header,
// slot entries and the messages on its rings), as this build writes and
// reads it: part of the build's layout (cluster2.Layout's Emitter).
const RegionVersion = regionVersion

// regionHeader is the first line of the emitter region. Written once by the
// master in Region's init function (published by the region directory),
// except masterPid, stored once at attach, and armed, the Event workers sleep
// on until their slot is armed.
type regionHeader struct {
	magic     uint64        // written once at init
	version   uint32        // written once at init
	slots     uint32        // written once at init: entries that follow
	ringCap   uint32        // written once at init: data capacity of every ring
	masterPid atomic.Uint32 // the master, when it attaches: 0 → pid
	armed     shm.Event     // the master wakes it after arming a slot
	_         [32]byte      // pad to a cache line
}

// slotEntry describes the ring pair of one slot of the process table. Only
// the master writes it; the worker of the slot reads it.
type slotEntry struct {
	// pid is the worker the rings are armed for; 0 while disarmed. The
	// master stores it (release) after toWorker and toMaster are set and
	// both rings are empty; the worker loads it (acquire) before reading
	// the offsets. Transitions: 0 → pid (arm), pid → 0 (disarm), by the
	// master only.
	pid atomic.Uint32
	// gen counts arms of this slot (logs only).
	gen atomic.Uint32
	// toWorker and toMaster are the offsets of the slot's rings, 0 until
	// the master first arms the slot; afterwards they never change.
	toWorker atomic.Uint64
	toMaster atomic.Uint64
	_        [40]byte // one entry per cache line: masters arm slots while workers read theirs
}

// Compile-time layout checks: a size change fails the build.
var (
	_ [regionHeaderSize - unsafe.Sizeof(regionHeader{})]byte
	_ [unsafe.Sizeof(regionHeader{}) - regionHeaderSize]byte
	_ [slotEntrySize - unsafe.Sizeof(slotEntry{})]byte
	_ [unsafe.Sizeof(slotEntry{}) - slotEntrySize]byte
	_ [0 - unsafe.Offsetof(regionHeader{}.armed)%8]byte
)

// regionSize returns the size of the emitter region for slots entries.
func regionSize(slots int) int64 {
	return regionHeaderSize + int64(slots)*slotEntrySize + hostBlockSize
}

// hostBlockOff returns the offset, from the region's start, of the host
// block of a region of slots entries.
func hostBlockOff(slots int) shm.Off { return shm.Off(regionHeaderSize + slots*slotEntrySize) }
