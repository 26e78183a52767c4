package ring

import (
	"context"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/internal/order"
	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/shm"
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

// Consumer is the reading end of a ring. Its zero value is not usable: get
// one from [Ring.Consumer]. It must not be copied, and must be used by one
// goroutine at a time.
type Consumer struct {
	_         nocopy.NoCopy
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
		d := xtime.Bound(ctx, c.o.PeerCheck)
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
