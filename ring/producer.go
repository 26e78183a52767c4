package ring

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/shm"
)

// Producer is the writing end of a ring. Its zero value is not usable: get
// one from [Ring.Producer]. It must not be copied, and must be used by one
// goroutine at a time (callers that write from several goroutines serialize
// with a mutex).
type Producer struct {
	_         nocopy.NoCopy
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
		h.spaceFree.sleep(t, xtime.Bound(ctx, pr.o.PeerCheck))
		if pr.fits(size) {
			return nil
		}
		if pr.r.peerDead(h.consumer.Load()) {
			return fmt.Errorf("ring: write: %w (consumer)", ErrPeerDead)
		}
	}
}
