package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/ring"
	"github.com/cluster2/cluster2/shm"
)

func init() {
	children["ringecho"] = childRingEcho
	children["lineecho"] = childLineEcho
}

const (
	msgSize        = 64
	throughputCap  = 64 << 10
	pingPongCap    = 4096
	envPingPong    = "BENCH_RING_MODE"
	regionPing     = "bench.ping"
	regionPong     = "bench.pong"
	regionLine     = "bench.line"
	typeStop       = 0xdead
	spinForever    = 1 << 30
	benchArenaSize = 8 << 20
)

func newArena(b *testing.B) *shm.Arena {
	a, err := shm.Create(shm.Options{Size: benchArenaSize, Slots: 8, Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a
}

func reportRate(b *testing.B, start time.Time, n int) {
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkRingThroughput(b *testing.B) {
	b.Run("ring", func(b *testing.B) { benchRingThroughput(b, 1, false) })
	b.Run("ring-batch16", func(b *testing.B) { benchRingThroughput(b, 16, false) })
	b.Run("chan", func(b *testing.B) { benchChanThroughput(b, false) })
	// Both ends' threads on one processor: what a loaded machine does to
	// them some of the time (the ring's spins must give the processor away).
	b.Run("ring-1cpu", func(b *testing.B) { benchRingThroughput(b, 1, true) })
	b.Run("chan-1cpu", func(b *testing.B) { benchChanThroughput(b, true) })
	b.Run("socketpair", benchSocketpairThroughput)
}

// localRing makes a ring of capacity bytes in a fresh arena and opens both
// of its ends in this process (the benchmark runs them on two goroutines).
func localRing(b *testing.B, capacity int) (*ring.Producer, *ring.Consumer) {
	a := newArena(b)
	off, err := a.Alloc(context.Background(), ring.Size(capacity))
	if err != nil {
		b.Fatal(err)
	}
	r, err := ring.Init(a, off, capacity)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := a.Self()
	pr, err := r.Producer(context.Background(), p, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := r.Consumer(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	return pr, c
}

// pinToFirstCPU locks the calling goroutine to its thread and that thread
// to the first processor this process may use. The thread ends with the
// goroutine (it stays locked), so the affinity does not leak.
func pinToFirstCPU(b *testing.B) {
	runtime.LockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		b.Fatal(err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	set.Zero()
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		b.Fatal(err)
	}
}

func benchRingThroughput(b *testing.B, batch int, pin bool) {
	ctx := context.Background()
	pr, c := localRing(b, throughputCap)
	var msg [msgSize]byte
	var wg *sync.WaitGroup
	if pin {
		pinToFirstCPU(b)
		wg = drainPinned(b, ctx, c)
	} else {
		wg = drainUntilStop(b, ctx, c) // the consumer, on the other core
	}
	b.ReportAllocs()
	b.SetBytes(msgSize)
	batchMsgs := make([][]byte, batch)
	for i := range batchMsgs {
		batchMsgs[i] = msg[:]
	}
	start, n := time.Now(), 0
	for b.Loop() {
		if batch == 1 {
			if err := pr.Write(ctx, 1, msg[:]); err != nil {
				b.Fatal(err)
			}
			n++
			continue
		}
		// One op is one message: write a batch every batch-th op.
		if n%batch == batch-1 {
			if _, err := pr.WriteBatch(ctx, 1, batchMsgs); err != nil {
				b.Fatal(err)
			}
		}
		n++
	}
	pr.Write(ctx, typeStop, nil)
	wg.Wait() // msgs/s counts until the consumer has read the last message
	reportRate(b, start, n)
	ps, cs := pr.Stats(), c.Stats()
	b.ReportMetric(float64(ps.Waits)/float64(n), "fullwaits/op")
	b.ReportMetric(float64(ps.Sleeps+cs.Sleeps)/float64(n), "sleeps/op")
	b.ReportMetric(float64(cs.Records)/float64(max(cs.Publishes, 1)), "msgs/publish")
}

// drainUntilStop reads c in batches of up to 256 on its own goroutine until
// a record of type typeStop; Wait on the result waits for it.
func drainUntilStop(b *testing.B, ctx context.Context, c *ring.Consumer) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() { drain(b, ctx, c) })
	return &wg
}

// drainPinned is drainUntilStop on a thread pinned to the processor
// pinToFirstCPU chose; it returns once the thread is pinned.
func drainPinned(b *testing.B, ctx context.Context, c *ring.Consumer) *sync.WaitGroup {
	var wg sync.WaitGroup
	pinned := make(chan struct{})
	wg.Go(func() {
		pinToFirstCPU(b)
		close(pinned)
		drain(b, ctx, c)
	})
	<-pinned
	return &wg
}

// drain reads c in batches of up to 256 until a record of type typeStop.
func drain(b *testing.B, ctx context.Context, c *ring.Consumer) {
	stop := false
	fn := func(typ uint32, _ []byte) { stop = stop || typ == typeStop }
	for !stop {
		if _, err := c.Read(ctx, fn, 256); err != nil {
			b.Error(err)
			return
		}
	}
}

func benchChanThroughput(b *testing.B, pin bool) {
	ch := make(chan [msgSize]byte, 1024)
	var wg sync.WaitGroup
	if pin {
		pinToFirstCPU(b)
	}
	wg.Go(func() {
		if pin {
			pinToFirstCPU(b)
		}
		for m := range ch {
			_ = m
		}
	})
	var msg [msgSize]byte
	b.ReportAllocs()
	b.SetBytes(msgSize)
	start, n := time.Now(), 0
	for b.Loop() {
		ch <- msg
		n++
	}
	close(ch)
	wg.Wait()
	reportRate(b, start, n)
}

func benchSocketpairThroughput(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fds[1])
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fds[1], buf)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 || err != nil {
				return // EOF: the writer closed
			}
		}
	})
	var msg [msgSize]byte
	b.ReportAllocs()
	b.SetBytes(msgSize)
	start, n := time.Now(), 0
	for b.Loop() {
		for {
			if _, err := unix.Write(fds[0], msg[:]); err != unix.EINTR {
				if err != nil {
					b.Fatal(err)
				}
				break
			}
		}
		n++
	}
	unix.Close(fds[0])
	wg.Wait()
	reportRate(b, start, n)
}

// pingPongArena makes the arena both processes share: a ring each way and
// two spin words on their own 128-byte lines.
func pingPongArena(b *testing.B) (a *shm.Arena, ping, pong *ring.Ring, line []atomic.Uint64) {
	a = newArena(b)
	ctx := context.Background()
	rings := make([]*ring.Ring, 2)
	for i, name := range []string{regionPing, regionPong} {
		_, _, err := a.Region(ctx, name, ring.Size(pingPongCap), func(off shm.Off) (err error) {
			rings[i], err = ring.Init(a, off, pingPongCap)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	off, _, err := a.Region(ctx, regionLine, 2*shm.PadLine, nil)
	if err != nil {
		b.Fatal(err)
	}
	return a, rings[0], rings[1], shm.Slice[atomic.Uint64](a, off, 2*shm.PadLine/8)
}

// openPingPong is pingPongArena in the child.
func openPingPong() (a *shm.Arena, ping, pong *ring.Ring, line []atomic.Uint64, p *shm.Proc) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "bench child: %s: %v\n", what, err)
		os.Exit(2)
	}
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fail("open", err)
	}
	ctx := context.Background()
	rings := make([]*ring.Ring, 2)
	for i, name := range []string{regionPing, regionPong} {
		off, _, err := a.Region(ctx, name, ring.Size(pingPongCap), nil)
		if err != nil {
			fail("region", err)
		}
		if rings[i], err = ring.Attach(a, off); err != nil {
			fail("attach", err)
		}
	}
	off, _, err := a.Region(ctx, regionLine, 2*shm.PadLine, nil)
	if err != nil {
		fail("region", err)
	}
	if p, err = a.Self(); err != nil {
		fail("join", err)
	}
	return a, rings[0], rings[1], shm.Slice[atomic.Uint64](a, off, 2*shm.PadLine/8), p
}

func pingPongOptions(mode string) *ring.Options {
	if mode == "futex" {
		return &ring.Options{Spin: -1}
	}
	return &ring.Options{Spin: spinForever}
}

// childRingEcho sends every record of the ping ring back on the pong ring
// until it reads a stop record.
func childRingEcho() {
	_, ping, pong, _, p := openPingPong()
	opts := pingPongOptions(os.Getenv(envPingPong))
	ctx := context.Background()
	c, err := ping.Consumer(p, opts)
	if err != nil {
		os.Exit(2)
	}
	pr, err := pong.Producer(ctx, p, opts)
	if err != nil {
		os.Exit(2)
	}
	stop := false
	echo := func(typ uint32, payload []byte) {
		stop = typ == typeStop
		if err := pr.Write(ctx, typ, payload); err != nil {
			os.Exit(3)
		}
	}
	for !stop {
		if _, err := c.Read(ctx, echo, 1); err != nil {
			fmt.Fprintln(os.Stderr, "bench child: read:", err)
			os.Exit(3)
		}
	}
}

// childLineEcho answers the parent's word with the same value in its own
// word, spinning, until the parent writes 0.
func childLineEcho() {
	_, _, _, line, _ := openPingPong()
	ping, pong := &line[0], &line[shm.PadLine/8]
	var last uint64
	for {
		v := ping.Load()
		if v == last {
			continue
		}
		if v == 0 {
			return
		}
		last = v
		pong.Store(v)
	}
}

func BenchmarkRingPingPong(b *testing.B) {
	b.Run("spin", func(b *testing.B) { benchRingPingPong(b, "spin") })
	b.Run("futex", func(b *testing.B) { benchRingPingPong(b, "futex") })
	b.Run("cacheline", benchCachelinePingPong)
}

func benchRingPingPong(b *testing.B, mode string) {
	a, ping, pong, _ := pingPongArena(b)
	cmd := xtesting.Command(b, "ringecho", []*os.File{a.File()}, envPingPong+"="+mode)
	xtesting.Start(b, cmd)
	p, _ := a.Self()
	opts := pingPongOptions(mode)
	ctx := context.Background()
	pr, err := ping.Producer(ctx, p, opts)
	if err != nil {
		b.Fatal(err)
	}
	c, err := pong.Consumer(p, opts)
	if err != nil {
		b.Fatal(err)
	}
	var msg [msgSize]byte
	fn := func(uint32, []byte) {}
	// One round trip before timing: the child has started and attached.
	roundTrip := func() {
		if err := pr.Write(ctx, 1, msg[:]); err != nil {
			b.Fatal(err)
		}
		for {
			n, err := c.Read(ctx, fn, 1)
			if err != nil {
				b.Fatal(err)
			}
			if n == 1 {
				return
			}
		}
	}
	roundTrip()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
	pr.Write(ctx, typeStop, nil)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("echo child: %v", err)
	}
	cs := c.Stats()
	b.ReportMetric(float64(cs.Sleeps)/float64(b.N), "sleeps/op")
	b.ReportMetric(float64(cs.Rescues)/float64(b.N), "rescues/op")
}

func benchCachelinePingPong(b *testing.B) {
	a, _, _, line := pingPongArena(b)
	cmd := xtesting.Command(b, "lineecho", []*os.File{a.File()})
	xtesting.Start(b, cmd)
	ping, pong := &line[0], &line[shm.PadLine/8]
	v := uint64(0)
	roundTrip := func() {
		v++
		ping.Store(v)
		for pong.Load() != v {
		}
	}
	roundTrip()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
	ping.Store(0)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("echo child: %v", err)
	}
}
