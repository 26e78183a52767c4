package shm

import (
	"sync/atomic"

	"github.com/cluster2/cluster2/internal/build"
)

// Version returns the arena layout version this build writes (Create) and
// reads (Open): LayoutVersion, plus the layout bump a test binary may be
// linked with (internal/build's test seam; 0 in production builds), so that
// a bumped binary and an unbumped one refuse each other's arena.
func Version() uint32 { return LayoutVersion + build.LayoutBump() }

// Format constants: changing any of them, or any struct below, changes the
// arena layout and must bump LayoutVersion.
const (
	// Magic identifies a cluster2 arena: "CLUSTER2" little-endian.
	Magic uint64 = 0x3252455453554c43

	// LayoutVersion is the version of the arena layout this build reads and
	// writes (see Version for the test seam). Open refuses any other. 2: the ring's producer may commit with
	// release stores, and a consumer of version 1 does not re-check the ring
	// after announcing a sleep, so it could sleep through a commit; the bytes
	// are the same. 3: the ring header's sleepGen and ackGen words (ring/doc.go,
	// "Commits without a fence"): a version-2 producer never acknowledges, so
	// a version-3 consumer would only ever sleep bounded; a version-2
	// consumer, which does not announce, could sleep through a commit. 4: the
	// slot's joinedBoot (CLOCK_BOOTTIME of the join), which proves a reused
	// pid dead when the slot's start time is unknown; a version-3 process
	// leaves it 0, and its slot's pid could then never be proven reused.
	LayoutVersion uint32 = 4

	// CacheLine is the unit of cache coherence we pad to. Fields written by
	// different processes are kept at least CacheLine apart; SPSC positions are
	// kept PadLine apart because adjacent-line prefetch pulls pairs of lines.
	CacheLine = 64

	// PadLine separates words written by different processes on hot paths.
	PadLine = 128

	// HeaderSize is the size of the arena header at offset 0.
	HeaderSize = 4096

	// SlotSize is the size of one process slot.
	SlotSize = 128

	// MaxRegions is the number of named regions an arena can hold.
	MaxRegions = 32

	// MaxLockRanges is the number of lock ranges an arena can register.
	MaxLockRanges = 64

	// RegionNameLen is the longest region name, in bytes.
	RegionNameLen = 24

	// allocAlign is the alignment of every region and allocation.
	allocAlign = CacheLine
)

// header is the arena's first 4096 bytes. See the package doc for the diagram
// and for who writes each field.
type header struct {
	magic      uint64        // written once by Create
	version    uint32        // written once by Create
	headerSize uint32        // written once by Create
	size       uint64        // written once by Create: total arena bytes
	creatorPid uint32        // written once by Create
	slotCount  uint32        // written once by Create
	slotsOff   uint64        // written once by Create
	gen        atomic.Uint64 // owner generations: Join adds one (any process)
	_          [16]byte      // keep the lock line apart from the read-mostly line

	lock           Lock          // header lock: guards top and both directories
	top            atomic.Uint64 // next free offset; stored under lock
	regionCount    atomic.Uint32 // published regions; stored under lock after the entry
	lockRangeCount atomic.Uint32 // published lock ranges; stored under lock after the entry
	_              [40]byte

	regions    [MaxRegions]regionEntry  // filled under lock, published by regionCount
	lockRanges [MaxLockRanges]lockRange // filled under lock, published by lockRangeCount
	_          [HeaderSize - 128 - MaxRegions*48 - MaxLockRanges*16]byte
}

// regionEntry names one region of the arena.
type regionEntry struct {
	name [RegionNameLen]byte // NUL-padded
	off  uint64
	size uint64
	_    [8]byte
}

// lockRange tells ReleaseSlot where robust locks live: count locks, the first
// at off, each stride bytes after the previous one.
type lockRange struct {
	off    uint64
	count  uint32
	stride uint32
}

// Slot states, in the low 8 bits of slot.word; the pid is in bits 8..39.
const (
	slotFree      = 0 // nobody; word is 0
	slotClaiming  = 1 // a process is filling the slot in
	slotLive      = 2 // token, role, startTime and joinedBoot are valid
	slotReleasing = 3 // a releaser is freeing the locks of the dead owner
)

// slot is one entry of the process table. Its owner writes it when it joins;
// afterwards only the owner (Leave) or a process that proved the owner dead
// (ReleaseSlot) writes it, both by CAS on word.
type slot struct {
	word       atomic.Uint64 // pid<<8 | state; CAS transitions only (see package doc)
	token      atomic.Uint32 // owner generation, valid while state is live
	role       atomic.Uint32 // free for the owner's use (cluster2 stores its role)
	startTime  atomic.Uint64 // the owner's start time (/proc/pid/stat field 22, ticks); 0 if unknown
	joinedAt   atomic.Int64  // unix nanoseconds of the join
	joinedBoot atomic.Int64  // CLOCK_BOOTTIME nanoseconds of the join (see "Who is dead" in doc.go)
	_          [SlotSize - 40]byte
}

func slotWord(pid int, state uint64) uint64 { return uint64(uint32(pid))<<8 | state }
func wordPid(w uint64) int                  { return int(uint32(w >> 8)) }
func wordState(w uint64) uint64             { return w & 0xff }
