package ring_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/ring"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/shm/shmtest"
)

// arenaRing makes a ring of capacity bytes in a fresh arena, and returns
// the arena, the ring's offset and the ring.
func arenaRing(tb testing.TB, capacity int) (*shm.Arena, shm.Off, *ring.Ring) {
	tb.Helper()
	a := shmtest.NewArena(tb, 1<<20+ring.Size(capacity))
	off, err := a.Alloc(context.Background(), ring.Size(capacity))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := ring.Init(a, off, capacity)
	if err != nil {
		tb.Fatal(err)
	}
	return a, off, r
}

// newRing makes a ring of capacity bytes in a fresh arena, with both ends
// opened by this process.
func newRing(tb testing.TB, capacity int) (*ring.Ring, *ring.Producer, *ring.Consumer) {
	tb.Helper()
	a, _, r := arenaRing(tb, capacity)
	p, err := a.Self()
	if err != nil {
		tb.Fatal(err)
	}
	pr, err := r.Producer(context.Background(), p, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := r.Consumer(p, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return r, pr, c
}

type rec struct {
	typ     uint32
	payload []byte
}

// drain polls everything and returns copies of the records.
func drain(tb testing.TB, c *ring.Consumer) []rec {
	tb.Helper()
	var out []rec
	for {
		n, err := c.Poll(func(typ uint32, p []byte) {
			out = append(out, rec{typ, bytes.Clone(p)})
		}, 1000)
		if err != nil {
			tb.Fatalf("poll: %v", err)
		}
		if n == 0 {
			return out
		}
	}
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

func TestWriteReadInOrder(t *testing.T) {
	r, pr, c := newRing(t, 1024)
	ctx := context.Background()
	for i := range 10 {
		if err := pr.Write(ctx, uint32(i), payload(i*7, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if r.Len() == 0 {
		t.Fatalf("Len = 0 with 10 records in")
	}
	got := drain(t, c)
	if len(got) != 10 {
		t.Fatalf("got %d records; want 10", len(got))
	}
	for i, g := range got {
		if g.typ != uint32(i) || !bytes.Equal(g.payload, payload(i*7, byte(i))) {
			t.Errorf("record %d: got type %d %x; want type %d %x", i, g.typ, g.payload, i, payload(i*7, byte(i)))
		}
	}
	if r.Len() > r.Cap()/8 { // only what the producer claimed ahead
		t.Errorf("Len = %d after drain; want at most %d", r.Len(), r.Cap()/8)
	}
}

func TestZeroLengthRecords(t *testing.T) {
	_, pr, c := newRing(t, 64)
	for range 100 { // many laps of a small ring
		for range 3 {
			if err := pr.TryWrite(0, nil); err != nil {
				t.Fatal(err)
			}
		}
		got := drain(t, c)
		if len(got) != 3 {
			t.Fatalf("got %d records; want 3", len(got))
		}
		for _, g := range got {
			if g.typ != 0 || len(g.payload) != 0 {
				t.Fatalf("got %+v; want an empty record of type 0", g)
			}
		}
	}
}

// TestWrapPadding writes records whose sizes do not divide the capacity, so
// that every lap ends with a padding record, and checks every record.
func TestWrapPadding(t *testing.T) {
	r, pr, c := newRing(t, 256)
	seq := 0
	for lap := range 50 {
		for range 3 {
			n := 8 + (seq*13)%40
			if err := pr.TryWrite(uint32(seq), payload(n, byte(seq))); err != nil {
				t.Fatalf("lap %d: write %d: %v", lap, seq, err)
			}
			seq++
		}
		got := drain(t, c)
		for i, g := range got {
			s := seq - len(got) + i
			if g.typ != uint32(s) || !bytes.Equal(g.payload, payload(8+(s*13)%40, byte(s))) {
				t.Fatalf("record %d is wrong: type %d, %d bytes", s, g.typ, len(g.payload))
			}
		}
	}
	if r.Len() > r.Cap()/8 {
		t.Errorf("Len = %d; want at most %d", r.Len(), r.Cap()/8)
	}
}

func TestTooLarge(t *testing.T) {
	r, pr, c := newRing(t, 128)
	err := pr.Write(context.Background(), 1, make([]byte, r.MaxPayload()+1))
	if !errors.Is(err, ring.ErrTooLarge) {
		t.Fatalf("Write(MaxPayload+1) = %v; want ErrTooLarge", err)
	}
	if _, err := pr.Claim(context.Background(), 1, -1); !errors.Is(err, ring.ErrTooLarge) {
		t.Fatalf("Claim(-1) = %v; want ErrTooLarge", err)
	}
	// The largest record fills the whole ring, even from the middle of a lap.
	if err := pr.TryWrite(2, payload(30, 1)); err != nil {
		t.Fatal(err)
	}
	drain(t, c)
	done := make(chan error, 1)
	go func() { done <- pr.Write(context.Background(), 3, payload(r.MaxPayload(), 3)) }()
	var got []rec
	for len(got) == 0 {
		got = append(got, drain(t, c)...)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got[0].typ != 3 || !bytes.Equal(got[0].payload, payload(r.MaxPayload(), 3)) {
		t.Fatalf("largest record came back wrong")
	}
}

func TestFullUntilDeadline(t *testing.T) {
	_, pr, c := newRing(t, 256)
	n := 0
	for ; ; n++ {
		err := pr.TryWrite(uint32(n), payload(24, byte(n)))
		if errors.Is(err, ring.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := pr.Write(ctx, 99, payload(24, 0))
	if !errors.Is(err, ring.ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write on a full ring = %v; want ErrFull and DeadlineExceeded", err)
	}
	got := drain(t, c) // nothing already there was harmed
	if len(got) != n {
		t.Fatalf("got %d records; want %d", len(got), n)
	}
	for i, g := range got {
		if g.typ != uint32(i) || !bytes.Equal(g.payload, payload(24, byte(i))) {
			t.Fatalf("record %d came back wrong", i)
		}
	}
}

func TestClaimCommitAbort(t *testing.T) {
	_, pr, c := newRing(t, 256)
	ctx := context.Background()
	buf, err := pr.Claim(ctx, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := drain(t, c); len(got) != 0 {
		t.Fatalf("an uncommitted claim was delivered: %+v", got)
	}
	copy(buf, "abc")
	pr.Commit()
	if _, err := pr.Claim(ctx, 6, 10); err != nil {
		t.Fatal(err)
	}
	pr.Abort()
	if err := pr.Write(ctx, 7, []byte("d")); err != nil {
		t.Fatal(err)
	}
	got := drain(t, c)
	if len(got) != 2 || got[0].typ != 5 || string(got[0].payload) != "abc" || got[1].typ != 7 || string(got[1].payload) != "d" {
		t.Fatalf("got %+v; want abc then d", got)
	}
}

// TestCorruptHeader scribbles the header of the second of three records: Poll
// delivers the first, then returns ErrCorrupt for good, and does not touch
// the ring's bytes.
func TestCorruptHeader(t *testing.T) {
	capacity := 256
	a, off, r := arenaRing(t, capacity)
	p, _ := a.Self()
	pr, _ := r.Producer(context.Background(), p, nil)
	c, _ := r.Consumer(p, nil)
	for i := range 3 {
		if err := pr.TryWrite(uint32(i), payload(16, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	data := a.Bytes(off+ring.HeaderSize, capacity)
	copy(data[24:32], []byte{0xf0, 0xff, 0xff, 0x00, 0, 0, 0, 0}) // record 1: length 16 MiB
	before := bytes.Clone(data)
	var got []uint32
	n, err := c.Poll(func(typ uint32, _ []byte) { got = append(got, typ) }, 10)
	if n != 1 || err != nil || len(got) != 1 || got[0] != 0 {
		t.Fatalf("Poll = %d, %v, %v; want the first record only", n, err, got)
	}
	for range 2 {
		if n, err := c.Poll(func(uint32, []byte) { t.Fatal("delivered past a corrupt header") }, 10); n != 0 || !errors.Is(err, ring.ErrCorrupt) {
			t.Fatalf("Poll = %d, %v; want ErrCorrupt", n, err)
		}
	}
	if _, err := c.Read(context.Background(), func(uint32, []byte) {}, 10); !errors.Is(err, ring.ErrCorrupt) {
		t.Fatalf("Read = %v; want ErrCorrupt", err)
	}
	if !bytes.Equal(data[24:], before[24:]) {
		t.Fatalf("the consumer modified bytes at or after the corrupt header")
	}
}

// TestHeaderBeyondTail scribbles a plausible header into free space: it is
// not delivered as a record.
func TestHeaderBeyondTail(t *testing.T) {
	a, off, r := arenaRing(t, 256)
	p, _ := a.Self()
	c, _ := r.Consumer(p, nil)
	copy(a.Bytes(off+ring.HeaderSize, 8), []byte{16, 0, 0, 0, 1, 0, 0, 0})
	if n, err := c.Poll(func(uint32, []byte) {}, 10); n != 0 || !errors.Is(err, ring.ErrCorrupt) {
		t.Fatalf("Poll = %d, %v; want ErrCorrupt", n, err)
	}
}

func TestInitAttachErrors(t *testing.T) {
	a := shmtest.NewArena(t, 1<<20)
	off, _ := a.Alloc(context.Background(), ring.Size(4096))
	for _, capacity := range []int{0, 32, 100, 3000, -64} {
		if _, err := ring.Init(a, off, capacity); !errors.Is(err, ring.ErrInvalidConfig) {
			t.Errorf("Init(capacity %d) = %v; want ErrInvalidConfig", capacity, err)
		}
	}
	if _, err := ring.Init(a, shm.Off(a.Size()-256), 1024); !errors.Is(err, ring.ErrInvalidConfig) {
		t.Errorf("Init past the arena's end = %v; want ErrInvalidConfig", err)
	}
	if _, err := ring.Attach(a, off); !errors.Is(err, ring.ErrCorrupt) {
		t.Errorf("Attach(zeroed memory) = %v; want ErrCorrupt", err)
	}
	if _, err := ring.Init(a, off, 4096); err != nil {
		t.Fatal(err)
	}
	r, err := ring.Attach(a, off)
	if err != nil || r.Cap() != 4096 {
		t.Fatalf("Attach = %v, %v; want a ring of 4096", r, err)
	}
	b := a.Bytes(off, 16)
	b[8] = 3 // capacity 4099
	if _, err := ring.Attach(a, off); !errors.Is(err, ring.ErrCorrupt) {
		t.Errorf("Attach(bad capacity) = %v; want ErrCorrupt", err)
	}
	b[8] = 0
	b[0] ^= 1
	if _, err := ring.Attach(a, off); !errors.Is(err, ring.ErrCorrupt) {
		t.Errorf("Attach(bad magic) = %v; want ErrCorrupt", err)
	}
}

// A parked reader (Options.Park) gets what a dead producer committed, then
// ErrPeerDead, like a futex sleeper.
func TestParkedReadSeesDeadProducer(t *testing.T) {
	a, _, r := arenaRing(t, 256)
	self, _ := a.Self()
	ghost, err := a.Join(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := r.Producer(ctx, ghost, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.Consumer(self, &ring.Options{Spin: -1, PeerCheck: 5 * time.Millisecond, Park: true})
	go func() {
		time.Sleep(20 * time.Millisecond) // the reader parks first
		pr.Write(ctx, 1, []byte("last words"))
		ghost.Leave()
	}()
	var got []string
	for {
		_, err := c.Read(ctx, func(_ uint32, p []byte) { got = append(got, string(p)) }, 10)
		if errors.Is(err, ring.ErrPeerDead) {
			break
		}
		if err != nil {
			t.Fatalf("Read = %v; want the record, then ErrPeerDead", err)
		}
	}
	if len(got) != 1 || got[0] != "last words" || c.Stats().Sleeps == 0 {
		t.Fatalf("got %q after %d parks; want the record written while the reader was parked", got, c.Stats().Sleeps)
	}
}

// TestUnblockDeadClaim leaves a claim open by a producer whose process (here
// a second membership of this process) leaves the arena, as a killed one
// would: Unblock turns it into padding and the consumer moves on.
func TestUnblockDeadClaim(t *testing.T) {
	a, _, r := arenaRing(t, 256)
	self, _ := a.Self()
	ghost, err := a.Join(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pr, err := r.Producer(ctx, ghost, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.Consumer(self, nil)
	if err := pr.Write(ctx, 1, []byte("whole")); err != nil {
		t.Fatal(err)
	}
	buf, _ := pr.Claim(ctx, 2, 20)
	copy(buf, "half a reco") // and the producer dies
	if ok, err := r.Unblock(ctx); ok || err != nil {
		t.Fatalf("Unblock with a live producer = %v, %v; want false, nil", ok, err)
	}
	ghost.Leave()
	got := drain(t, c)
	if len(got) != 1 || string(got[0].payload) != "whole" {
		t.Fatalf("got %+v; want the whole record only", got)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Read(rctx, func(uint32, []byte) {}, 10); !errors.Is(err, ring.ErrPeerDead) {
		t.Fatalf("Read stuck on a dead claim = %v; want ErrPeerDead", err)
	}
	if ok, err := r.Unblock(ctx); !ok || err != nil {
		t.Fatalf("Unblock = %v, %v; want true, nil", ok, err)
	}
	if ok, _ := r.Unblock(ctx); ok {
		t.Fatalf("second Unblock found something to do")
	}
	pr2, err := r.Producer(ctx, self, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pr2.Write(ctx, 3, []byte("after")); err != nil {
		t.Fatal(err)
	}
	got = drain(t, c)
	if len(got) != 1 || got[0].typ != 3 || string(got[0].payload) != "after" {
		t.Fatalf("got %+v; want the record written after Unblock", got)
	}
	if r.Len() > r.Cap()/8 {
		t.Fatalf("Len = %d; want at most what the producer claims ahead", r.Len())
	}
}

// TestProducerOpenRecovers: opening a new producer after a dead one's claim
// does Unblock's work by itself.
func TestProducerOpenRecovers(t *testing.T) {
	a, _, r := arenaRing(t, 256)
	self, _ := a.Self()
	ghost, _ := a.Join(1)
	ctx := context.Background()
	pr, _ := r.Producer(ctx, ghost, nil)
	c, _ := r.Consumer(self, nil)
	if _, err := r.Producer(ctx, self, nil); !errors.Is(err, ring.ErrBusy) {
		t.Fatalf("second live producer: %v; want ErrBusy", err)
	}
	pr.Claim(ctx, 1, 100)
	ghost.Leave()
	pr2, err := r.Producer(ctx, self, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr2.Write(ctx, 2, []byte("x"))
	got := drain(t, c)
	if len(got) != 1 || got[0].typ != 2 {
		t.Fatalf("got %+v; want the new producer's record", got)
	}
}

func TestBlockingReadAcrossGoroutines(t *testing.T) {
	for _, tc := range []struct {
		spin int
		park bool
	}{{-1, false}, {0, false}, {-1, true}} {
		t.Run(fmt.Sprintf("spin=%d,park=%v", tc.spin, tc.park), func(t *testing.T) {
			a, _, r := arenaRing(t, 512)
			p, _ := a.Self()
			opts := &ring.Options{Spin: tc.spin, PeerCheck: 10 * time.Millisecond, Park: tc.park}
			pr, _ := r.Producer(context.Background(), p, opts)
			c, _ := r.Consumer(p, opts)
			const n = 20000
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := range n {
					if err := pr.Write(context.Background(), uint32(i), payload(i%100, byte(i))); err != nil {
						t.Error(err)
						return
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			next := 0
			for next < n {
				_, err := c.Read(ctx, func(typ uint32, p []byte) {
					if typ != uint32(next) || !bytes.Equal(p, payload(next%100, byte(next))) {
						t.Fatalf("record %d: got type %d", next, typ)
					}
					next++
				}, 64)
				if err != nil {
					t.Fatalf("read after %d records: %v", next, err)
				}
			}
			wg.Wait()
		})
	}
}

func TestNoAllocsPerRecord(t *testing.T) {
	_, pr, c := newRing(t, 4096)
	msg := make([]byte, 64)
	ctx := context.Background()
	fn := func(uint32, []byte) {}
	allocs := testing.AllocsPerRun(1000, func() {
		pr.Write(ctx, 1, msg)
		pr.TryWrite(2, msg)
		c.Poll(fn, 10)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record; want 0", allocs)
	}
}

// WriteBatch delivers every record in order, across wraps and full waits.
func TestWriteBatch(t *testing.T) {
	_, pr, c := newRing(t, 1024)
	const total = 5000
	done := make(chan []int)
	go func() {
		var got []int
		for len(got) < total {
			_, err := c.Read(context.Background(), func(typ uint32, p []byte) {
				got = append(got, int(binary.LittleEndian.Uint32(p)))
			}, 64)
			if err != nil {
				t.Error(err)
				break
			}
		}
		done <- got
	}()
	batch := make([][]byte, 0, 37)
	for i := 0; i < total; {
		batch = batch[:0]
		for j := 0; j < 37 && i < total; j++ {
			p := make([]byte, 4+i%50)
			binary.LittleEndian.PutUint32(p, uint32(i))
			batch = append(batch, p)
			i++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := pr.WriteBatch(ctx, 1, batch)
		cancel()
		if err != nil || n != len(batch) {
			t.Fatalf("WriteBatch = %d, %v; want %d", n, err, len(batch))
		}
	}
	got := <-done
	for i, v := range got {
		if v != i {
			t.Fatalf("record %d carries %d", i, v)
		}
	}
	if n, err := pr.WriteBatch(context.Background(), 1, [][]byte{make([]byte, 2000)}); n != 0 || !errors.Is(err, ring.ErrTooLarge) {
		t.Fatalf("WriteBatch of a too-large record = %d, %v; want ErrTooLarge", n, err)
	}
}

// No wake-up is lost: the consumer always sleeps (no spin), a sleep lasts
// until a wake or the test's deadline, and the producer commits at random
// moments, often just as the consumer announces itself. A lost wake would
// leave a record undelivered until the deadline, and Read would fail.
func TestNoLostWakeUps(t *testing.T) {
	a, _, r := arenaRing(t, 4096)
	p, _ := a.Self()
	opts := &ring.Options{Spin: -1, PeerCheck: time.Hour}
	pr, _ := r.Producer(context.Background(), p, opts)
	c, _ := r.Consumer(p, opts)
	n := 20000
	if testing.Short() {
		n = 5000
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		sink := uint64(0)
		for i := range n {
			for k := range rng.IntN(20000) { // a gap of 0 to about 10 µs
				sink += uint64(k)
			}
			if err := pr.Write(context.Background(), uint32(sink), payload(8, byte(i))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := 0
	for got < n {
		k, err := c.Read(ctx, func(uint32, []byte) {}, 64)
		if err != nil {
			t.Fatalf("read after %d of %d records (a lost wake-up?): %v", got, n, err)
		}
		got += k
	}
	wg.Wait()
	t.Logf("%d records, %d consumer sleeps", n, c.Stats().Sleeps)
}
