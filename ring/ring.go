package ring

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/order"
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

// Consumer publication: consumed space is zeroed and handed back to the
// producer every capacity/publishFraction bytes, when Poll finds the ring
// empty, and when Read has waited publishAfterSpins re-checks (or sleeps).
// A producer faster than its consumer waits for space at every publication;
// publishing every 1/64 of the capacity rather than every 1/16 cut its waits
// and the sleeps they led to (64-byte records through a 64 KiB ring: 20-24 ns
// against 24-27 ns per record, interleaved runs on the 2-core VM).
const (
	publishFraction   = 64
	publishAfterSpins = 64
)

// unackedSleep is the first bound of a consumer's futex sleep while the
// producer has not acknowledged that the consumer may sleep (header.ackGen):
// a commit by a release store made before the producer saw the announcement
// may be missed by the consumer's re-check, and is found when this sleep
// ends. The bound doubles with each such sleep, up to PeerCheck, so that a
// consumer waiting on an idle producer does not wake a thousand times a
// second (see the package doc, "Commits without a fence").
const unackedSleep = time.Millisecond

// spinPause is how many PAUSE instructions a waiting end executes between two
// re-checks of the ring (about 20 ns here): a re-check of a line that the
// other end is writing takes that line from it, and a waiter that re-checks
// back to back slows the writer it waits for (64-byte records: 22-24 against
// 26-31 ns per record with back-to-back re-checks).
const spinPause = 2

// A waiting end that has re-checked spinYieldAfter times without finding
// what it waits for gives its processor away (sched_yield(2)) at every
// spinYieldEvery-th re-check after that, instead of pausing. A spin only pays
// while the other end runs on another processor; when both ends share one
// (fewer free processors than ends: a loaded machine, a VM's vCPUs taken by
// other work) the spinner holds the processor its peer needs until the
// kernel's tick preempts it, milliseconds. A yield lets a runnable peer run
// at once, and returns at once when nothing else is runnable. 64-byte
// records through a 64 KiB ring (BenchmarkRingThroughput on the 2-vCPU AMD
// EPYC VM, load average 3.3-7 from other work, interleaved runs, ns per
// record): ring 194-351 without the yields (perf: 63% of the CPU in the
// spins' PAUSEs), 48-85 with them (16 re-checks before the first yield;
// 55-140 with 64); ring-1cpu, both ends' threads pinned to one processor,
// 383-401 against 43-99. Each re-check before the first yield costs about
// 70 ns here, time in which a peer that shares the processor cannot run.
const (
	spinYieldAfter = 16
	spinYieldEvery = 16
)

// spinWait is what a spinning end does after its i-th re-check (counting
// from 0) failed: pause, or yield its processor (see spinYieldAfter).
func spinWait(i int) {
	if i >= spinYieldAfter && i%spinYieldEvery == 0 {
		if testHookYield != nil {
			testHookYield()
		}
		osYield()
		return
	}
	cpuPause(spinPause)
}

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
		return nil, fmt.Errorf("%w: capacity %d is not a power of two in [%d, %d]", ErrBadConfig, capacity, MinCapacity, MaxCapacity)
	}
	if off%shm.CacheLine != 0 || !a.Contains(off, uint64(Size(capacity))) {
		return nil, fmt.Errorf("%w: %d bytes at %d do not fit the arena", ErrBadConfig, Size(capacity), off)
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

// Unblock turns the record that a dead producer claimed but never committed
// into padding, so that the consumer moves past it, and reports whether there
// was one. Call it (from the consumer's process or the master) once the
// producer is known dead, before a new producer is attached; attaching a
// producer does the same by itself. It does nothing and returns false while
// the producer's process lives. It may run concurrently with the consumer:
// see the package doc for why that is safe. A record header found out of
// range returns ErrCorrupt.
func (r *Ring) Unblock(ctx context.Context) (bool, error) {
	p, err := r.a.Self()
	if err != nil {
		return false, fmt.Errorf("ring: unblock: %w", err)
	}
	if _, err := r.h.recovery.Lock(ctx, p); err != nil {
		return false, fmt.Errorf("ring: unblock: %w", err)
	}
	defer r.h.recovery.Unlock(p)
	if tok := r.h.producer.Load(); tok != 0 && r.a.Alive(tok) {
		return false, nil
	}
	return r.recoverClaim()
}

// recoverClaim finds the claimed but uncommitted bytes, if any, and commits
// them as padding. The caller holds the recovery lock and no live producer
// writes: the only other writer is the consumer, which consumes committed
// records and zeroes them after storing read past them.
func (r *Ring) recoverClaim() (bool, error) {
	tail := r.h.tail.Load()
restart:
	q := r.h.read.Load()
	for q < tail {
		if tail-q > r.cap {
			return false, fmt.Errorf("%w: read %d is %d bytes behind tail", ErrCorrupt, q, tail-q)
		}
		i := q & r.mask
		w := r.words[i>>3].Load()
		// seq-cst: the consumer stores read past a record before it zeroes
		// the record, so a header seen zeroed (or half zeroed) by the load
		// above is followed by a read past it here.
		if r.h.read.Load() > q {
			goto restart
		}
		if w == 0 { // the claim starts here: nothing after it is committed
			first := min(tail-q, r.cap-i)
			if rest := tail - q - first; rest > 0 { // the claim runs into the next lap
				r.words[0].Store(padFlag | rest)
			}
			// release: commits the padding; the consumer's acquiring load of
			// the word then skips the claimed bytes.
			r.words[i>>3].Store(padFlag | first)
			r.h.dataReady.wake()
			return true, nil
		}
		size, _, ok := r.decode(w, i)
		if !ok {
			return false, fmt.Errorf("%w: header %#x at %d", ErrCorrupt, w, q)
		}
		q += size
	}
	return false, nil
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

// sleepFor returns how long one futex sleep may last under ctx.
func sleepFor(ctx context.Context, period time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < period {
			return max(d, 0)
		}
	}
	return period
}

// Producer is the writing end of a ring. Its zero value is not usable: get
// one from [Ring.Producer]. It must not be copied, and must be used by one
// goroutine at a time (callers that write from several goroutines serialize
// with a mutex).
type Producer struct {
	r         *Ring
	words     []atomic.Uint64 // r.words
	data      []byte          // r.data
	cap       uint64          // r.cap
	o         Options
	tail      uint64 // where the next record goes
	claimEnd  uint64 // h.tail as we last stored it (we are its only writer): tail <= claimEnd
	headCache uint64 // the consumer's head as last loaded: reloaded only when it says full
	claimed   int64  // data offset of the open claim's header; -1: none
	claimHdr  uint64 // the header Commit will store
	acked     uint64 // the sleepGen we last stored in ackGen
	stats     ProducerStats
}

// ProducerStats counts what a Producer did since it was opened.
type ProducerStats struct {
	Records uint64 // records committed
	Waits   uint64 // writes that found the ring full and waited
	Sleeps  uint64 // futex sleeps while waiting for space
}

// Stats returns the producer's counters.
func (pr *Producer) Stats() ProducerStats { return pr.stats }

// Producer opens the ring's writing end for p. A producer end held by another
// live process returns ErrBusy. A dead predecessor's uncommitted claim is
// turned into padding first (see Unblock). Only one Producer may be in use
// per ring.
func (r *Ring) Producer(ctx context.Context, p *shm.Proc, opts *Options) (*Producer, error) {
	if _, err := r.h.recovery.Lock(ctx, p); err != nil {
		return nil, fmt.Errorf("ring: open producer: %w", err)
	}
	defer r.h.recovery.Unlock(p)
	tok := r.h.producer.Load()
	if tok != 0 && tok != p.Token() && r.a.Alive(tok) {
		return nil, fmt.Errorf("ring: open producer: %w (token %d)", ErrBusy, tok)
	}
	if !r.h.producer.CompareAndSwap(tok, p.Token()) {
		return nil, fmt.Errorf("ring: open producer: %w (raced)", ErrBusy)
	}
	if _, err := r.recoverClaim(); err != nil {
		return nil, fmt.Errorf("ring: open producer: %w", err)
	}
	// Acknowledge a sleeping consumer's generation at once: this process
	// has committed nothing yet, and every commit of ours loads sleepGen
	// after this load (package doc, "Commits without a fence").
	gen := r.h.sleepGen.Load()
	if gen&1 != 0 {
		r.h.ackGen.Store(gen) // seq-cst
	}
	return &Producer{
		r:         r,
		words:     r.words,
		data:      r.data,
		cap:       r.cap,
		o:         opts.withDefaults(),
		tail:      r.h.tail.Load(),
		claimEnd:  r.h.tail.Load(),
		headCache: r.h.head.Load(),
		claimed:   -1,
		acked:     gen,
	}, nil
}

// Write appends one record of type typ carrying payload, waiting while the
// ring is full, at most until ctx ends: then it returns an error wrapping
// ErrFull and ctx's error. It returns ErrPeerDead when the consumer's process
// died while the ring was full, and ErrTooLarge (at once) for a payload
// larger than MaxPayload. payload may be reused as soon as Write returns.
//
// In the terminology of the Go memory model, Write synchronizes before the
// Poll or Read, in any process, that delivers the record.
func (pr *Producer) Write(ctx context.Context, typ uint32, payload []byte) error {
	if pr.claimed < 0 {
		if i, hdr, ok := pr.fastClaim(typ, payload); ok {
			pr.commit(i, hdr)
			return nil
		}
	}
	buf, err := pr.claim(ctx, typ, len(payload), true)
	if err != nil {
		return err
	}
	copy(buf, payload)
	pr.Commit()
	return nil
}

// fastClaim is Write's fast path: when the record fits in the claimed-ahead
// space before the end, it copies the payload in, advances tail and returns
// the record's data offset and the header to commit. The caller checks that
// no claim is open (claim, the slow path, panics then). Small enough to be
// inlined: as a call it cost Write 7 ns of its 20.
func (pr *Producer) fastClaim(typ uint32, payload []byte) (i, hdr uint64, ok bool) {
	l := uint64(RecordHeaderSize + len(payload))
	end := pr.tail + align(l)
	i = pr.tail & (pr.cap - 1)
	if end > pr.claimEnd || i+end-pr.tail > pr.cap {
		return 0, 0, false
	}
	copy(pr.data[i+RecordHeaderSize:], payload)
	pr.tail = end
	return i, uint64(typ)<<32 | l, true
}

// WriteBatch appends one record of type typ per payload, in order, and makes
// them visible together: every header but the first is stored plainly, and
// the first is stored last with the one releasing store, so a batch costs one
// atomic store and at most one wake-up instead of one per record. When the
// ring fills mid-batch, what is written so far is published before waiting
// (the consumer must be able to free space). It returns how many records it
// wrote and waits and fails like Write. A producer that dies mid-batch leaves
// an uncommitted first header: Unblock pads the whole batch away.
func (pr *Producer) WriteBatch(ctx context.Context, typ uint32, payloads [][]byte) (int, error) {
	first, firstHdr := int64(-1), uint64(0)
	flush := func() {
		if first >= 0 {
			// Every record of the batch, headers and payloads, is written
			// before the consumer's acquiring load of this word.
			pr.commitWord(&pr.words[first>>3], firstHdr)
			first = -1
		}
	}
	for k, p := range payloads {
		if pr.claimed < 0 {
			if i, hdr, ok := pr.fastClaim(typ, p); ok {
				if first < 0 {
					first, firstHdr = int64(i), hdr
				} else {
					binary.LittleEndian.PutUint64(pr.data[i:], hdr) // plain: ordered by the first header's store
				}
				pr.stats.Records++
				continue
			}
		}
		buf, err := pr.claim(ctx, typ, len(p), false)
		if errors.Is(err, ErrFull) {
			flush()
			buf, err = pr.claim(ctx, typ, len(p), true)
		}
		if err != nil {
			flush()
			return k, err
		}
		copy(buf, p)
		if first < 0 {
			first, firstHdr = pr.claimed, pr.claimHdr
		} else {
			// Plain: invisible until the first header is stored, which
			// orders it (the consumer never reads past an uncommitted header).
			binary.LittleEndian.PutUint64(pr.r.data[pr.claimed:], pr.claimHdr)
		}
		pr.claimed = -1
		pr.stats.Records++
	}
	flush()
	return len(payloads), nil
}

// TryWrite is Write without waiting: a full ring returns ErrFull at once.
func (pr *Producer) TryWrite(typ uint32, payload []byte) error {
	buf, err := pr.claim(context.Background(), typ, len(payload), false)
	if err != nil {
		return err
	}
	copy(buf, payload)
	pr.Commit()
	return nil
}

// Claim reserves a record of type typ with an n-byte payload and returns the
// payload's bytes, in the ring, for the caller to fill; Commit publishes the
// record, Abort drops it. It waits and fails like Write. Until Commit or Abort
// no other Claim or Write may be made, and the slice must not be used after.
// A process that dies between Claim and Commit leaves a claim that Unblock
// (or the next producer) turns into padding.
func (pr *Producer) Claim(ctx context.Context, typ uint32, n int) ([]byte, error) {
	return pr.claim(ctx, typ, n, true)
}

func (pr *Producer) claim(ctx context.Context, typ uint32, n int, wait bool) ([]byte, error) {
	if pr.claimed >= 0 {
		panic("ring: Claim or Write while a claim is open")
	}
	r := pr.r
	if n < 0 || n > r.MaxPayload() {
		return nil, fmt.Errorf("ring: write %d bytes: %w (max %d)", n, ErrTooLarge, r.MaxPayload())
	}
	l := uint64(RecordHeaderSize + n)
	size := align(l)
	i := pr.tail & r.mask
	if i+size > r.cap { // the record does not fit before the end: pad to it
		pad := r.cap - i
		if err := pr.reserve(ctx, pad, wait); err != nil {
			return nil, err
		}
		pr.extend(pad)
		pr.tail += pad
		// seq-cst: commits the padding record (a fenced commit: see commitWord).
		r.words[i>>3].Store(padFlag | pad)
		r.h.dataReady.wake() // the consumer must free this padding if we wait below
		i = 0
	}
	if err := pr.reserve(ctx, size, wait); err != nil {
		return nil, err
	}
	pr.extend(size)
	pr.tail += size
	pr.claimed = int64(i)
	pr.claimHdr = uint64(typ)<<32 | l
	return r.data[i+RecordHeaderSize : i+l : i+l], nil
}

// Commit publishes the claimed record and wakes the consumer if it announced
// that it sleeps. In the terminology of the Go memory model, what was written
// into the claimed bytes happens before the consumer's delivery of the
// record. Commit without an open claim panics.
func (pr *Producer) Commit() {
	if pr.claimed < 0 {
		panic("ring: Commit without a claim")
	}
	i := uint64(pr.claimed)
	pr.claimed = -1
	pr.commit(i, pr.claimHdr)
}

// commit stores the header word hdr of the record at data offset i, and
// wakes the consumer if it announced that it sleeps.
func (pr *Producer) commit(i, hdr uint64) {
	pr.stats.Records++
	pr.commitWord(&pr.words[i>>3], hdr)
}

// commitWord stores the header word w = hdr that commits one record or a
// batch, then wakes the consumer if it announced that it sleeps. The header
// is written last: the payload bytes (and a batch's other headers) happen
// before the consumer's acquiring load of it.
//
// While the consumer may sleep on the futex (sleepGen odd) the store is
// sequentially consistent (XCHG on amd64), so the load of its sleeping flag
// in wake cannot pass it: Dekker's handshake with the consumer's announcement
// (wait.go). While it does not (sleepGen even: it reads, spins or parks), the
// store is a release store only (order.StoreRelease: a MOV on amd64), which
// that load may pass; the consumer covers those commits before it sleeps
// unbounded (package doc, "Commits without a fence").
func (pr *Producer) commitWord(w *atomic.Uint64, hdr uint64) {
	if order.PlainRelease {
		if gen := pr.r.h.sleepGen.Load(); gen&1 == 0 || testUnfenced {
			if testHookReorder != nil {
				pr.commitReordered(w, hdr)
				return
			}
			order.StoreRelease(w, hdr) // release: see above
			pr.r.h.dataReady.wake()    // a system call only if the consumer announced that it sleeps
			return
		} else if gen != pr.acked {
			// seq-cst, before the commit below: every commit before this
			// one is visible once this store is (package doc).
			pr.acked = gen
			pr.r.h.ackGen.Store(gen)
		}
	}
	w.Store(hdr)            // seq-cst: ordered before wake's load of the sleeping flag
	pr.r.h.dataReady.wake() // a system call only if the consumer announced that it sleeps
}

// commitReordered is commitWord's release store with the reordering x86-TSO
// allows made explicit, for tests (testHookReorder): the load of the
// consumer's sleeping flag is satisfied first, then the hook runs (the
// consumer goes to sleep meanwhile), then the header becomes visible.
func (pr *Producer) commitReordered(w *atomic.Uint64, hdr uint64) {
	sleeping := pr.r.h.dataReady.sleeping.Load()
	testHookReorder()
	order.StoreRelease(w, hdr)
	if sleeping != 0 {
		pr.r.h.dataReady.wakeSlow()
	}
}

// Abort drops the open claim: its bytes are committed as padding.
func (pr *Producer) Abort() {
	if pr.claimed < 0 {
		panic("ring: Abort without a claim")
	}
	// seq-cst: commits the padding (a fenced commit: see commitWord).
	pr.r.words[pr.claimed>>3].Store(padFlag | align(pr.claimHdr&(padFlag-1)))
	pr.claimed = -1
	pr.r.h.dataReady.wake()
}

// extend makes sure that the published tail covers the next size bytes,
// which reserve found free. It claims ahead, up to a chunk (an eighth of the
// capacity) or the free space, so that most records cost no store of tail.
func (pr *Producer) extend(size uint64) {
	if pr.tail+size <= pr.claimEnd {
		return
	}
	r := pr.r
	pr.claimEnd = min(pr.tail+max(size, r.cap/8), pr.headCache+r.cap)
	// Claim before writing: a producer that dies from here on leaves a zero
	// header at its next record, below tail, for Unblock to find.
	r.h.tail.Store(pr.claimEnd)
}

// reserve makes sure that size bytes after pr.tail are free, reloading the
// consumer's head only when the cached one says the ring is full.
func (pr *Producer) reserve(ctx context.Context, size uint64, wait bool) error {
	if pr.tail+size-pr.headCache <= pr.r.cap {
		return nil
	}
	// acquire: the consumer zeroed every byte below head before storing it.
	pr.headCache = pr.r.h.head.Load()
	if pr.tail+size-pr.headCache <= pr.r.cap {
		return nil
	}
	if !wait {
		return fmt.Errorf("ring: write: %w", ErrFull)
	}
	pr.stats.Waits++
	return pr.waitSpace(ctx, size)
}

func (pr *Producer) fits(size uint64) bool {
	pr.headCache = pr.r.h.head.Load()
	return pr.tail+size-pr.headCache <= pr.r.cap
}

// waitSpace is reserve's slow path: spin, then sleep on spaceFree.
func (pr *Producer) waitSpace(ctx context.Context, size uint64) error {
	for i := range pr.o.Spin {
		if pr.fits(size) {
			return nil
		}
		spinWait(i)
	}
	h := pr.r.h
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ring: write: %w: %w", ErrFull, err)
		}
		t := h.spaceFree.prepare()
		if pr.fits(size) { // re-check after announcing
			h.spaceFree.cancel()
			return nil
		}
		pr.stats.Sleeps++
		h.spaceFree.sleep(t, sleepFor(ctx, pr.o.PeerCheck))
		if pr.fits(size) {
			return nil
		}
		if pr.r.peerDead(h.consumer.Load()) {
			return fmt.Errorf("ring: write: %w (consumer)", ErrPeerDead)
		}
	}
}

// Consumer is the reading end of a ring. Its zero value is not usable: get
// one from [Ring.Consumer]. It must not be copied, and must be used by one
// goroutine at a time.
type Consumer struct {
	r         *Ring
	o         Options
	pos       uint64        // next record to deliver
	pub       uint64        // head and read as last published
	tailCache uint64        // the producer's tail as last loaded: bounds every header
	err       error         // sticky ErrCorrupt
	gen       uint64        // sleepGen as we last stored it (we are its only writer): odd while we may sleep on the futex
	unacked   time.Duration // bound of the next futex sleep while the producer has not acknowledged gen
	stats     ConsumerStats
}

// ConsumerStats counts what a Consumer did since it was opened.
type ConsumerStats struct {
	Records   uint64 // records delivered
	Publishes uint64 // times consumed space was zeroed and handed back
	Sleeps    uint64 // futex sleeps in Read (parks, with Options.Park)
	Rescues   uint64 // sleeps given up because the re-check after announcing found a record
	Unacked   uint64 // futex sleeps bounded because the producer had not yet acknowledged that we may sleep (package doc, "Commits without a fence")
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats { return c.stats }

// Consumer opens the ring's reading end for p. A consumer end held by
// another live process returns ErrBusy. Bytes that a dead predecessor
// consumed but did not zero are zeroed first; records it was delivering but
// had not yet marked consumed are delivered again (delivery is at least once
// across a consumer's death, exactly once otherwise).
func (r *Ring) Consumer(p *shm.Proc, opts *Options) (*Consumer, error) {
	tok := r.h.consumer.Load()
	if tok != 0 && tok != p.Token() && r.a.Alive(tok) {
		return nil, fmt.Errorf("ring: open consumer: %w (token %d)", ErrBusy, tok)
	}
	if !r.h.consumer.CompareAndSwap(tok, p.Token()) {
		return nil, fmt.Errorf("ring: open consumer: %w (raced)", ErrBusy)
	}
	head, read := r.h.head.Load(), r.h.read.Load()
	if head > read || read-head > r.cap {
		return nil, fmt.Errorf("ring: open consumer: %w: head %d, read %d", ErrCorrupt, head, read)
	}
	c := &Consumer{r: r, o: opts.withDefaults(), pos: head, pub: head}
	// We start reading, not sleeping: a dead predecessor may have left
	// sleepGen odd, which would make the producer fence every commit.
	c.gen = r.h.sleepGen.Load()
	if c.gen&1 != 0 {
		c.gen++
		r.h.sleepGen.Store(c.gen)
	}
	c.publish(read)
	return c, nil
}

// Poll delivers up to max committed records, in order, to fn, without
// waiting, and returns how many it delivered. payload is valid only during
// the call of fn (it is the ring's memory, zeroed and reused afterwards) and
// must not be modified. Padding records are skipped and not counted. A
// record header out of range returns ErrCorrupt (after delivering the
// records before it), from then on.
//
// Consumed space is zeroed and handed back to the producer every 64th
// of the capacity, and when Poll finds the ring empty (Read hands it back
// when it starts to wait).
func (c *Consumer) Poll(fn func(typ uint32, payload []byte), max int) (int, error) {
	return c.poll(fn, max, true)
}

// poll is Poll; with publishEmpty false it leaves consumed space below the
// publication threshold unpublished even when it finds the ring empty (Read
// publishes it before it waits).
func (c *Consumer) poll(fn func(typ uint32, payload []byte), max int, publishEmpty bool) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	r := c.r
	pos, n := c.pos, 0
	for n < max {
		i := pos & r.mask
		// acquire: pairs with the release store of Commit; the payload
		// bytes are complete once the header is seen.
		w := r.words[i>>3].Load()
		if w == 0 {
			break
		}
		size, pl, ok := r.decode(w, i)
		if ok && pos+size > c.tailCache {
			c.tailCache = r.h.tail.Load() // the producer stored tail before the header
			ok = pos+size <= c.tailCache
		}
		if !ok {
			c.err = fmt.Errorf("%w: header %#x at position %d", ErrCorrupt, w, pos)
			break
		}
		if w&padFlag == 0 {
			fn(uint32(w>>32), r.data[i+RecordHeaderSize:i+RecordHeaderSize+pl:i+RecordHeaderSize+pl])
			n++
		}
		pos += size
		c.pos = pos
		if pos-c.pub >= r.cap/publishFraction {
			c.publish(pos)
		}
	}
	if publishEmpty && n < max && pos != c.pub {
		c.publish(pos)
	}
	c.stats.Records += uint64(n)
	if n == 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// publish marks everything below pos consumed, zeroes it, and hands it back
// to the producer.
func (c *Consumer) publish(pos uint64) {
	r := c.r
	old := c.pub
	c.pos = pos
	if pos == old {
		return
	}
	// seq-cst: read is stored before the zeroing below, so that a recoverer
	// that sees a zeroed header also sees read past it (package doc). The
	// store is not a fence for later plain stores everywhere (on arm64 it is
	// STLR, which the zeroing may pass): StoreFence keeps them after it.
	r.h.read.Store(pos)
	order.StoreFence()
	i, j := old&r.mask, pos&r.mask
	switch {
	case pos-old >= r.cap:
		clear(r.data)
	case i < j:
		clear(r.data[i:j])
	default:
		clear(r.data[i:])
		clear(r.data[:j])
	}
	// release: the zeroed bytes happen before the producer's acquiring load
	// of head; stale bytes never look like a committed header after a wrap.
	r.h.head.Store(pos)
	c.pub = pos
	c.stats.Publishes++
	r.h.spaceFree.wake() // a system call only if the producer announced that it sleeps
}

// ready reports whether a record (or padding) is committed at the read
// position.
func (c *Consumer) ready() bool {
	return c.r.words[(c.pos&c.r.mask)>>3].Load() != 0
}

// Read is Poll that waits for at least one record: it spins, then sleeps on
// the ring's futex until the producer commits, at most until ctx ends (then
// it returns ctx's error, wrapped). It returns ErrPeerDead when the ring is
// empty, or stuck on an uncommitted claim, and the producer's process is dead:
// call Unblock, then Read again for what follows.
func (c *Consumer) Read(ctx context.Context, fn func(typ uint32, payload []byte), max int) (int, error) {
	h := c.r.h
	waited := false
	for {
		if n, err := c.poll(fn, max, false); n > 0 || err != nil {
			if !waited && c.gen&1 != 0 {
				// Records were there without waiting: we are behind the
				// producer, not about to sleep. Let it commit without a
				// fence again.
				c.gen++
				h.sleepGen.Store(c.gen)
			}
			return n, err
		}
		if c.ready() { // we consumed only padding
			continue
		}
		waited = true
		if c.spin() {
			continue
		}
		if err := ctx.Err(); err != nil {
			c.publish(c.pos)
			return 0, fmt.Errorf("ring: read: %w", err)
		}
		c.publish(c.pos) // before sleeping: the producer may wait for this space
		if c.o.Park {
			if err := c.park(ctx); err != nil {
				return 0, err
			}
			continue
		}
		if order.PlainRelease && c.gen&1 == 0 {
			// seq-cst: before our re-check below and before the producer's
			// next load of it; from then on it fences its commits.
			c.gen++
			h.sleepGen.Store(c.gen)
			c.unacked = unackedSleep
		}
		t := h.dataReady.prepare()
		// The acknowledgement is loaded before the re-check: every commit
		// made before the producer stored it is then seen by the re-check,
		// and every commit after it is fenced (package doc).
		acked := !order.PlainRelease || testUnfenced || h.ackGen.Load() == c.gen
		if c.ready() { // re-check after announcing
			h.dataReady.cancel()
			c.stats.Rescues++
			continue
		}
		d := sleepFor(ctx, c.o.PeerCheck)
		if !acked {
			// A commit made before the producer saw sleepGen odd may be
			// invisible to the re-check above: bound the sleep.
			d = min(d, c.unacked)
			c.unacked = min(2*c.unacked, c.o.PeerCheck)
			c.stats.Unacked++
		}
		c.stats.Sleeps++
		if testHookSleep != nil {
			testHookSleep(d)
		}
		h.dataReady.sleep(t, d)
		if !c.ready() && c.r.peerDead(h.producer.Load()) {
			return 0, fmt.Errorf("ring: read: %w (producer)", ErrPeerDead)
		}
	}
}

// park is Read's wait with Options.Park: it returns when a record (or padding)
// is committed, with ErrPeerDead when the producer's process died first, or
// with ctx's error.
func (c *Consumer) park(ctx context.Context) error {
	parked := time.Duration(0)
	for d := ParkMin; !c.ready(); d = min(2*d, ParkMax) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ring: read: %w", err)
		}
		time.Sleep(d)
		c.stats.Sleeps++
		if parked += d; parked >= c.o.PeerCheck {
			parked = 0
			if !c.ready() && c.r.peerDead(c.r.h.producer.Load()) {
				return fmt.Errorf("ring: read: %w (producer)", ErrPeerDead)
			}
		}
	}
	return nil
}

// spin re-checks the ring up to Spin times and reports whether a record
// came. Consumed space not yet published is published after a short while
// without records: a producer may be waiting for it.
func (c *Consumer) spin() bool {
	for i := range c.o.Spin {
		if c.ready() {
			return true
		}
		if i == publishAfterSpins {
			c.publish(c.pos)
		}
		spinWait(i)
	}
	return false
}
