package shm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cluster2/cluster2/internal/nocopy"
)

// Off is a byte offset from the start of an arena. Offset 0 is the header, so
// a zero Off means "none" wherever a structure refers to another.
type Off uint64

// Options configures Create. The zero value is valid: every zero field takes
// its default.
type Options struct {
	// Size is the arena's size in bytes, header and slots included. It is
	// rounded up to a multiple of 4096. Default 64 MiB; at least 64 KiB.
	Size int64

	// Slots is the number of process slots (master, workers, tools). Default
	// 64; from 2 to 4096.
	Slots int

	// Name names the memfd (visible in /proc/PID/fd). Default "cluster2".
	Name string
}

// Defaults of Options.
const (
	DefaultSize  = 64 << 20
	DefaultSlots = 64
	minSize      = 64 << 10
	maxSlots     = 4096
)

func (o Options) withDefaults() (Options, error) {
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Slots == 0 {
		o.Slots = DefaultSlots
	}
	if o.Name == "" {
		o.Name = "cluster2"
	}
	o.Size = (o.Size + 4095) &^ 4095
	if o.Size < minSize {
		return o, fmt.Errorf("shm: %w: Size %d is below %d bytes", ErrInvalidConfig, o.Size, minSize)
	}
	if o.Slots < 2 || o.Slots > maxSlots {
		return o, fmt.Errorf("shm: %w: Slots %d is outside [2, %d]", ErrInvalidConfig, o.Slots, maxSlots)
	}
	need := int64(HeaderSize) + int64(o.Slots)*SlotSize
	if need > o.Size/2 {
		return o, fmt.Errorf("shm: %w: %d slots leave too little of a %d-byte arena", ErrInvalidConfig, o.Slots, o.Size)
	}
	return o, nil
}

// Arena is one mapping of a shared arena. Create makes a new arena; Open maps
// one created by another process. An Arena must not be copied; it is safe for
// concurrent use by goroutines, and the memory it maps is shared with every
// other process that mapped the same arena.
type Arena struct {
	_      nocopy.NoCopy
	mem    []byte // the exact slice returned by mmap, kept for munmap
	file   *os.File
	h      *header
	slots  []slot
	closed atomic.Bool

	selfMu sync.Mutex
	self   *Proc // the first Proc this process joined with; owns the header lock
}

// Create makes a new arena in a memfd, reserves all of its memory (so that a
// full machine fails here, not later with SIGBUS), maps it and joins it as
// slot 0. The caller hands File to child processes, which call Open.
func Create(opts Options) (*Arena, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	f, mem, err := createMapping(o.Name, o.Size)
	if err != nil {
		return nil, err
	}
	a := &Arena{mem: mem, file: f}
	h := Ptr[header](a, 0)
	h.version = Version()
	h.headerSize = HeaderSize
	h.size = uint64(o.Size)
	h.creatorPid = uint32(os.Getpid())
	h.slotCount = uint32(o.Slots)
	h.slotsOff = HeaderSize
	h.top.Store(alignUp(uint64(HeaderSize)+uint64(o.Slots)*SlotSize, allocAlign))
	h.magic = Magic // last: an arena with a magic has a complete header
	a.bind(h)
	if _, err := a.JoinSlot(0, 0); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Open maps the arena held by f (usually an inherited descriptor) and checks
// its header. It takes ownership of f: Close closes it. A file that is not an
// arena returns ErrBadMagic, one of another layout ErrLayoutVersion, one whose
// header contradicts itself ErrCorrupt.
func Open(f *os.File) (*Arena, error) {
	mem, err := mapFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	a := &Arena{mem: mem, file: f}
	if err := a.check(); err != nil {
		a.Close()
		return nil, err
	}
	a.bind(Ptr[header](a, 0))
	return a, nil
}

func (a *Arena) check() error {
	if len(a.mem) < HeaderSize {
		return fmt.Errorf("%w: %d bytes is smaller than a header", ErrBadMagic, len(a.mem))
	}
	h := Ptr[header](a, 0)
	if h.magic != Magic {
		return fmt.Errorf("%w: %#x", ErrBadMagic, h.magic)
	}
	if v := Version(); h.version != v {
		return fmt.Errorf("%w: arena has %d, this build reads %d", ErrLayoutVersion, h.version, v)
	}
	switch {
	case h.headerSize != HeaderSize:
		return fmt.Errorf("%w: header size %d", ErrCorrupt, h.headerSize)
	case h.size != uint64(len(a.mem)):
		return fmt.Errorf("%w: header says %d bytes, the file has %d", ErrCorrupt, h.size, len(a.mem))
	case h.slotsOff != HeaderSize || h.slotCount < 2 || h.slotCount > maxSlots ||
		h.slotsOff+uint64(h.slotCount)*SlotSize > h.size:
		return fmt.Errorf("%w: %d slots at %d", ErrCorrupt, h.slotCount, h.slotsOff)
	case h.top.Load() > h.size:
		return fmt.Errorf("%w: allocation top %d beyond size %d", ErrCorrupt, h.top.Load(), h.size)
	case h.regionCount.Load() > MaxRegions || h.lockRangeCount.Load() > MaxLockRanges:
		return fmt.Errorf("%w: directory counts %d/%d", ErrCorrupt, h.regionCount.Load(), h.lockRangeCount.Load())
	}
	for i := range h.regionCount.Load() {
		r := &h.regions[i]
		if r.off < h.slotsOff || r.off+r.size > h.size || r.off+r.size < r.off || r.off%allocAlign != 0 {
			return fmt.Errorf("%w: region %d at %d+%d", ErrCorrupt, i, r.off, r.size)
		}
	}
	for i := range h.lockRangeCount.Load() {
		r := &h.lockRanges[i]
		end := r.off + uint64(r.count)*uint64(r.stride)
		if r.off < h.slotsOff || end < r.off || end > h.size || r.stride < LockSize || r.off%4 != 0 {
			return fmt.Errorf("%w: lock range %d at %d", ErrCorrupt, i, r.off)
		}
	}
	return nil
}

func (a *Arena) bind(h *header) {
	a.h = h
	a.slots = Slice[slot](a, Off(h.slotsOff), int(h.slotCount))
}

// Close unmaps the arena and closes its descriptor. Every pointer obtained from
// the arena is invalid afterwards. Close does not leave the process slot: call
// [Proc.Leave] first for a clean exit (a process that simply exits is reaped
// by [Arena.ReleaseSlot]).
func (a *Arena) Close() error {
	if !a.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := unmap(a.mem)
	if cerr := a.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// File returns the arena's descriptor, for handing to a child process. The
// arena keeps ownership.
func (a *Arena) File() *os.File { return a.file }

// Size returns the arena's size in bytes.
func (a *Arena) Size() int64 { return int64(len(a.mem)) }

// CreatorPid returns the pid of the process that created the arena.
func (a *Arena) CreatorPid() int { return int(a.h.creatorPid) }

// Free returns the number of bytes not yet allocated.
func (a *Arena) Free() int64 { return int64(a.h.size - a.h.top.Load()) }

// Contains reports whether [off, off+n) lies inside the arena's allocated
// part (above the slot table). Use it before following an offset read from the
// arena, which a crash or a bug may have left anywhere.
func (a *Arena) Contains(off Off, n uint64) bool {
	end := uint64(off) + n
	return uint64(off) >= a.h.slotsOff && end >= uint64(off) && end <= a.h.size
}

// Bytes returns the n bytes at off as a slice whose capacity ends at n. It
// panics when the range is outside the arena (see [Arena.Contains]).
func (a *Arena) Bytes(off Off, n int) []byte {
	if n < 0 || uint64(off)+uint64(n) > uint64(len(a.mem)) {
		panic("shm: Bytes out of bounds")
	}
	return a.mem[off : uint64(off)+uint64(n) : uint64(off)+uint64(n)]
}

// Self returns the Proc this process joined with first, joining a free slot
// if it has not joined yet.
func (a *Arena) Self() (*Proc, error) {
	a.selfMu.Lock()
	defer a.selfMu.Unlock()
	if a.self != nil {
		return a.self, nil
	}
	p, err := a.join(-1, 0)
	if err != nil {
		return nil, err
	}
	a.self = p
	return p, nil
}

// Region returns the offset of the region called name, creating it with size
// bytes (zeroed, 64-byte aligned) if it does not exist yet; init, when not nil,
// runs on a new region under the header lock before any other process can see
// it. created tells which happened. A region that exists with another size
// returns ErrRegionMismatch; no room returns ErrArenaFull.
func (a *Arena) Region(ctx context.Context, name string, size int64, init func(Off) error) (off Off, created bool, err error) {
	if len(name) == 0 || len(name) > RegionNameLen || size <= 0 {
		return 0, false, fmt.Errorf("shm: %w: region %q of %d bytes", ErrInvalidConfig, name, size)
	}
	if off, ok, err := a.lookup(name, size); ok || err != nil {
		return off, false, err
	}
	p, err := a.Self()
	if err != nil {
		return 0, false, err
	}
	if _, err := a.h.lock.Lock(ctx, p); err != nil {
		return 0, false, fmt.Errorf("shm: region %q: %w", name, err)
	}
	// Recovering the header lock needs no repair: see the package doc.
	defer a.h.lock.Unlock(p)
	if off, ok, err := a.lookup(name, size); ok || err != nil {
		return off, false, err
	}
	n := a.h.regionCount.Load()
	if n >= MaxRegions {
		return 0, false, fmt.Errorf("shm: region %q: %w: all %d directory entries used", name, ErrArenaFull, MaxRegions)
	}
	off, err = a.allocLocked(uint64(size))
	if err != nil {
		return 0, false, fmt.Errorf("shm: region %q: %w", name, err)
	}
	if init != nil {
		if err := init(off); err != nil {
			return 0, false, fmt.Errorf("shm: region %q: init: %w", name, err)
		}
	}
	e := &a.h.regions[n]
	*e = regionEntry{off: uint64(off), size: uint64(size)}
	copy(e.name[:], name)
	a.h.regionCount.Store(n + 1) // release: publishes the entry and what init wrote
	return off, true, nil
}

// Lookup returns the offset and size of the region called name, if it exists.
func (a *Arena) Lookup(name string) (off Off, size int64, ok bool) {
	n := a.h.regionCount.Load() // acquire: entries below n are complete
	for i := range min(n, MaxRegions) {
		e := &a.h.regions[i]
		if string(bytes.TrimRight(e.name[:], "\x00")) == name {
			return Off(e.off), int64(e.size), true
		}
	}
	return 0, 0, false
}

// lookup finds a published region by name.
func (a *Arena) lookup(name string, size int64) (Off, bool, error) {
	off, have, ok := a.Lookup(name)
	if ok && have != size {
		return 0, false, fmt.Errorf("shm: region %q: %w: has %d bytes, asked %d", name, ErrRegionMismatch, have, size)
	}
	return off, ok, nil
}

// Alloc reserves size bytes (zeroed, 64-byte aligned) that nobody else will
// be given, and returns their offset. Space is never returned to the arena:
// allocate long-lived structures once and manage their inside yourself.
func (a *Arena) Alloc(ctx context.Context, size int64) (Off, error) {
	if size <= 0 {
		return 0, fmt.Errorf("shm: %w: alloc of %d bytes", ErrInvalidConfig, size)
	}
	p, err := a.Self()
	if err != nil {
		return 0, err
	}
	if _, err := a.h.lock.Lock(ctx, p); err != nil {
		return 0, fmt.Errorf("shm: alloc: %w", err)
	}
	defer a.h.lock.Unlock(p)
	return a.allocLocked(uint64(size))
}

func (a *Arena) allocLocked(size uint64) (Off, error) {
	top := a.h.top.Load()
	end := alignUp(top+size, allocAlign)
	if end < top || end > a.h.size {
		return 0, fmt.Errorf("%w: %d bytes asked, %d free", ErrArenaFull, size, a.h.size-top)
	}
	a.h.top.Store(end)
	return Off(top), nil
}

// RegisterLocks records that count robust locks live at off, off+stride, …,
// so that ReleaseSlot can release the locks of a dead process. Register every
// Lock placed in the arena, once, when the structure holding it is created.
func (a *Arena) RegisterLocks(ctx context.Context, off Off, count int, stride int) error {
	if count <= 0 || stride < LockSize || !a.Contains(off, uint64(count)*uint64(stride)) ||
		uint64(off)%4 != 0 || stride%4 != 0 {
		return fmt.Errorf("shm: %w: lock range %d×%d at %d", ErrInvalidConfig, count, stride, off)
	}
	p, err := a.Self()
	if err != nil {
		return err
	}
	if _, err := a.h.lock.Lock(ctx, p); err != nil {
		return fmt.Errorf("shm: register locks: %w", err)
	}
	defer a.h.lock.Unlock(p)
	n := a.h.lockRangeCount.Load()
	if n >= MaxLockRanges {
		return fmt.Errorf("shm: register locks: %w: all %d lock ranges used", ErrArenaFull, MaxLockRanges)
	}
	a.h.lockRanges[n] = lockRange{off: uint64(off), count: uint32(count), stride: uint32(stride)}
	a.h.lockRangeCount.Store(n + 1) // release: publishes the entry
	return nil
}

// forEachLock calls fn for every registered lock and the header lock.
func (a *Arena) forEachLock(fn func(*Lock)) {
	fn(&a.h.lock)
	n := a.h.lockRangeCount.Load()
	for i := range min(n, MaxLockRanges) {
		r := a.h.lockRanges[i]
		for j := range uint64(r.count) {
			fn(Ptr[Lock](a, Off(r.off+j*uint64(r.stride))))
		}
	}
}

func alignUp(n, align uint64) uint64 { return (n + align - 1) &^ (align - 1) }
