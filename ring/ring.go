package ring

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/shm"
)

// Format constants: changing any of them, or the header struct, changes the
// ring layout (and so the arena's layout version).
const (
	// HeaderSize is the size of a ring's header, in front of its data.
	HeaderSize = 384

	// RecordHeaderSize is the size of the header in front of every record.
	RecordHeaderSize = 8

	// Align is the alignment of every record in the data area.
	Align = 8

	// MinCapacity and MaxCapacity bound a ring's data capacity, which must be
	// a power of two.
	MinCapacity = 64
	MaxCapacity = 1 << 30

	// magic marks an initialized ring: "CL2RING1" little-endian.
	magic uint64 = 0x31474e4952324c43

	// padFlag, in the length word of a record header, marks a padding record:
	// bytes the consumer skips.
	padFlag = 1 << 31
)

// Defaults of Options. DefaultSpin re-checks, with their pauses, took about
// 50 µs where they were chosen: about what a futex sleep and wake-up cost in
// a VM, so that a waiter spins about as long as sleeping would cost it (with
// 50 µs rather than 5 µs of spinning the producer and consumer of a busy ring
// slept a tenth as often). On the 2-vCPU AMD EPYC VM, whose PAUSE is slower,
// a consumer's spin on an empty ring lasted 138-153 µs with pauses only and
// 0.3-0.7 ms with the yields under a load average of 7 (224 µs at 2, with
// 64 re-checks before the first yield): a yield runs whatever else is
// runnable, and that processor time is not the spinner's.
const (
	DefaultSpin      = 2000
	DefaultPeerCheck = 50 * time.Millisecond
)

// header is the ring's first HeaderSize bytes: three 128-byte lines, so that
// the producer's and the consumer's hot words never share a cache line (nor an
// adjacent-line prefetch pair). See the package doc for the diagram.
type header struct {
	magic    uint64        // written once by Init, before the offset is shared
	capacity uint64        // written once by Init: data bytes, a power of two
	producer atomic.Uint32 // token of the producer end's process; 0: none. CAS by the attaching producer
	consumer atomic.Uint32 // token of the consumer end's process; 0: none. CAS by the attaching consumer
	recovery shm.Lock      // serializes Unblock and producer attach (the writers of uncommitted headers)
	_        [32]byte      // keep the event words on their own half line

	dataReady waiter        // the consumer sleeps on it when empty; the producer (or a recoverer) wakes it after a commit
	spaceFree waiter        // the producer sleeps on it when full; the consumer wakes it after freeing space
	sleepGen  atomic.Uint64 // written by the consumer only: odd while it may sleep on dataReady (commits must be fenced), even while it reads or parks; +1 per change
	ackGen    atomic.Uint64 // written by the producer only: the last odd sleepGen it saw, stored before any commit that follows that load
	_         [32]byte

	tail atomic.Uint64 // written by the producer only: end of the claimed bytes (monotonic position)
	_    [120]byte

	read atomic.Uint64 // written by the consumer only: records below are consumed (monotonic)
	head atomic.Uint64 // written by the consumer only: bytes below are consumed and zeroed; head <= read
	_    [112]byte
}

// Options tunes the waits of a Producer or Consumer. The zero value takes the
// defaults.
type Options struct {
	// Spin is how many times a waiting end re-checks the ring (pausing about
	// 20 ns between re-checks on amd64; after the first 16, every 16th
	// re-check yields the processor to another runnable thread instead,
	// sched_yield(2)) before it announces itself and sleeps on the futex. 0 means DefaultSpin; a negative value never spins
	// (every wait sleeps).
	Spin int

	// PeerCheck is how long one futex sleep lasts at most: after each sleep
	// that ended without progress the waiter checks whether the other end's
	// process still lives, and whether its context ended (a context without
	// a deadline is only noticed at this period). 0 means DefaultPeerCheck.
	// A consumer's futex sleeps are shorter (1 ms, doubling up to
	// PeerCheck) after it stopped being busy and until the producer
	// acknowledges that it may sleep (package doc, "Commits without a
	// fence").
	PeerCheck time.Duration

	// Park makes a waiting consumer park its goroutine instead of sleeping
	// on the futex: after its spin, Read looks at the ring again after
	// ParkMin, then at intervals doubling up to ParkMax (time.Sleep), and
	// checks the producer's process every PeerCheck. A goroutine blocked in
	// a futex system call keeps its P until the runtime's monitor takes it
	// back (20 µs to 10 ms: the monitor backs off while it finds nothing to
	// do), and in a process with one P (a prefork worker, GOMAXPROCS =
	// cores/workers) every other goroutine waits that long; a parked
	// goroutine holds none. The price: a record that comes to a quiet ring
	// waits up to ParkMax (and the Go timer's resolution, about a
	// millisecond when the process is idle). The producer never wakes a
	// parked consumer.
	Park bool
}

// Park intervals (Options.Park).
const (
	ParkMin = 50 * time.Microsecond
	ParkMax = time.Millisecond
)

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	switch {
	case v.Spin == 0:
		v.Spin = DefaultSpin
	case v.Spin < 0:
		v.Spin = 0
	}
	if v.PeerCheck <= 0 {
		v.PeerCheck = DefaultPeerCheck
	}
	return v
}

// String returns a one-line description of the options.
func (o Options) String() string {
	return fmt.Sprintf("ring.Options{Spin: %d, PeerCheck: %v, Park: %v}", o.Spin, o.PeerCheck, o.Park)
}

// Ring is this process's view of a ring in an arena. It holds no state of its
// own beyond the mapping, so any number of processes may hold a Ring for the
// same offset; a Ring may be copied and is safe for concurrent use, but a ring
// has one Producer and one Consumer at a time (see [Ring.Producer]).
type Ring struct {
	a     *shm.Arena
	h     *header
	words []atomic.Uint64 // the data area as 8-byte words: record headers
	data  []byte          // the data area as bytes: payloads
	cap   uint64
	mask  uint64
}

// Size returns the number of arena bytes a ring of the given data capacity
// occupies (header included). Init checks the capacity.
func Size(capacity int) int64 { return HeaderSize + int64(capacity) }

func checkCapacity(capacity uint64) bool {
	return capacity >= MinCapacity && capacity <= MaxCapacity && capacity&(capacity-1) == 0
}

// Init lays a new, empty ring of capacity data bytes (a power of two) over
// the Size(capacity) arena bytes at off (64-byte aligned, as Region and Alloc
// return), erasing whatever was there. Call it once, before the offset is
// handed to other processes (for example in the init function of
// [shm.Arena.Region], whose publication then orders it before every Attach).
func Init(a *shm.Arena, off shm.Off, capacity int) (*Ring, error) {
	c := uint64(capacity)
	if capacity < 0 || !checkCapacity(c) {
		return nil, fmt.Errorf("ring: %w: capacity %d is not a power of two in [%d, %d]", ErrInvalidConfig, capacity, MinCapacity, MaxCapacity)
	}
	if off%shm.CacheLine != 0 || !a.Contains(off, uint64(Size(capacity))) {
		return nil, fmt.Errorf("ring: %w: %d bytes at %d do not fit the arena", ErrInvalidConfig, Size(capacity), off)
	}
	clear(a.Bytes(off, int(Size(capacity))))
	h := shm.Ptr[header](a, off)
	h.capacity = c
	h.magic = magic
	return bind(a, off, h), nil
}

// Attach returns the ring that Init laid at off. A header that is not a
// ring's, or whose capacity or positions are impossible, returns ErrCorrupt.
func Attach(a *shm.Arena, off shm.Off) (*Ring, error) {
	if off%shm.CacheLine != 0 || !a.Contains(off, HeaderSize) {
		return nil, fmt.Errorf("%w: no room for a ring header at %d", ErrCorrupt, off)
	}
	h := shm.Ptr[header](a, off)
	if h.magic != magic {
		return nil, fmt.Errorf("%w: bad magic %#x at %d", ErrCorrupt, h.magic, off)
	}
	if !checkCapacity(h.capacity) || !a.Contains(off, HeaderSize+h.capacity) {
		return nil, fmt.Errorf("%w: capacity %d at %d", ErrCorrupt, h.capacity, off)
	}
	head, read, tail := h.head.Load(), h.read.Load(), h.tail.Load()
	if head > read || read > tail || tail-head > h.capacity {
		return nil, fmt.Errorf("%w: positions head %d, read %d, tail %d", ErrCorrupt, head, read, tail)
	}
	return bind(a, off, h), nil
}

func bind(a *shm.Arena, off shm.Off, h *header) *Ring {
	dataOff := off + HeaderSize
	n := int(h.capacity)
	return &Ring{
		a:     a,
		h:     h,
		words: shm.Slice[atomic.Uint64](a, dataOff, n/8),
		data:  a.Bytes(dataOff, n),
		cap:   h.capacity,
		mask:  h.capacity - 1,
	}
}

// Cap returns the ring's data capacity in bytes.
func (r *Ring) Cap() int { return int(r.cap) }

// MaxPayload returns the largest payload a record of this ring can carry.
func (r *Ring) MaxPayload() int { return int(r.cap) - RecordHeaderSize }

// Len returns the bytes claimed by the producer and not yet consumed:
// records, padding, and space the producer claimed ahead for its next
// records (up to an eighth of the capacity). It is a snapshot.
func (r *Ring) Len() int {
	read := r.h.read.Load()
	return int(r.h.tail.Load() - read)
}

// ProducerToken and ConsumerToken return the owner generations ([shm.Proc.Token])
// of the processes that last opened each end, or 0.
func (r *Ring) ProducerToken() uint32 { return r.h.producer.Load() }

// ConsumerToken: see ProducerToken.
func (r *Ring) ConsumerToken() uint32 { return r.h.consumer.Load() }

// Reset empties the ring and forgets both ends. Call it only when no process
// uses either end (for example after both died); it is not synchronized with
// a live producer or consumer.
func (r *Ring) Reset() {
	clear(r.data)
	r.h.tail.Store(0)
	r.h.read.Store(0)
	r.h.head.Store(0)
	r.h.producer.Store(0)
	r.h.consumer.Store(0)
	r.h.dataReady.sleeping.Store(0)
	r.h.spaceFree.sleeping.Store(0)
	r.h.sleepGen.Store(0)
	r.h.ackGen.Store(0)
}

// decode checks the header word w found at data offset i and returns the
// record's size in the ring (aligned) and its payload length.
func (r *Ring) decode(w uint64, i uint64) (size, n uint64, ok bool) {
	l := w & (padFlag - 1)
	if w&padFlag != 0 {
		return l, 0, l >= RecordHeaderSize && l%Align == 0 && w>>32 == 0 && i+l <= r.cap
	}
	size = align(l)
	return size, l - RecordHeaderSize, l >= RecordHeaderSize && i+size <= r.cap
}

func align(n uint64) uint64 { return (n + Align - 1) &^ (Align - 1) }

// peerDead reports whether the end whose token is tok belongs to a dead
// process. A missing end (token 0) is not dead: it has not come yet.
func (r *Ring) peerDead(tok uint32) bool { return tok != 0 && !r.a.Alive(tok) }
