package ring_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/ring"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/shm/shmtest"
)

const (
	ringRegion   = "ringtest"
	ringCapacity = 4096
	envCount     = "RING_TEST_COUNT"
)

// sharedRing makes the test's ring in a fresh arena, as a named region that
// children find.
func sharedRing(t *testing.T) (*shm.Arena, *ring.Ring) {
	a := shmtest.NewArena(t, 4<<20)
	var r *ring.Ring
	_, _, err := a.Region(context.Background(), ringRegion, ring.Size(ringCapacity), func(off shm.Off) (err error) {
		r, err = ring.Init(a, off, ringCapacity)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return a, r
}

// childRing opens the inherited arena (fd 3) and the test's ring.
func childRing() (*shm.Arena, *ring.Ring, *shm.Proc) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "child: %s: %v\n", what, err)
		os.Exit(2)
	}
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fail("open", err)
	}
	off, _, err := a.Region(context.Background(), ringRegion, ring.Size(ringCapacity), nil)
	if err != nil {
		fail("region", err)
	}
	r, err := ring.Attach(a, off)
	if err != nil {
		fail("attach", err)
	}
	p, err := a.Self()
	if err != nil {
		fail("join", err)
	}
	return a, r, p
}

// A checked record: pid u32 | seq u32 | body | crc32 u32 of all before it.
func sealRecord(b []byte, pid, seq uint32, rng *rand.Rand) {
	binary.LittleEndian.PutUint32(b, pid)
	binary.LittleEndian.PutUint32(b[4:], seq)
	for i := 8; i < len(b)-4; i++ {
		b[i] = byte(rng.Uint32())
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
}

func checkRecord(p []byte) (pid, seq uint32, err error) {
	if len(p) < 12 {
		return 0, 0, fmt.Errorf("%d-byte record", len(p))
	}
	if crc32.ChecksumIEEE(p[:len(p)-4]) != binary.LittleEndian.Uint32(p[len(p)-4:]) {
		return 0, 0, fmt.Errorf("bad checksum on a %d-byte record", len(p))
	}
	return binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:]), nil
}

// childStream writes RING_TEST_COUNT checked records, then exits.
func childStream() {
	_, r, p := childRing()
	pr, err := r.Producer(context.Background(), p, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: producer:", err)
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Getenv(envCount))
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	buf := make([]byte, 1024)
	for i := range n {
		b := buf[:12+rng.IntN(1000)]
		sealRecord(b, uint32(os.Getpid()), uint32(i), rng)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := pr.Write(ctx, uint32(len(b)), b)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: write:", err)
			os.Exit(3)
		}
	}
}

// childSlowWriter writes checked records forever, filling each claim a byte
// at a time so that a kill lands mid-record often.
func childSlowWriter() {
	_, r, p := childRing()
	pr, err := r.Producer(context.Background(), p, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: producer:", err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 2))
	tmp := make([]byte, 1024)
	for i := uint32(0); ; i++ {
		b := tmp[:12+rng.IntN(600)]
		sealRecord(b, uint32(os.Getpid()), i, rng)
		buf, err := pr.Claim(context.Background(), uint32(len(b)), len(b))
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: claim:", err)
			os.Exit(3)
		}
		for j := range b {
			buf[j] = b[j]
			if j%64 == 0 {
				time.Sleep(time.Microsecond)
			}
		}
		pr.Commit()
	}
}

// childConsumeExit opens the consumer end and exits without a word.
func childConsumeExit() {
	_, r, p := childRing()
	if _, err := r.Consumer(p, nil); err != nil {
		os.Exit(2)
	}
}

// TestCrossProcessStream: a child streams checked records; the parent reads
// them all, in order, whole.
func TestCrossProcessStream(t *testing.T) {
	a, r := sharedRing(t)
	const n = 50000
	cmd := xtesting.Command(t, "stream", []*os.File{a.File()}, envCount+"="+strconv.Itoa(n))
	xtesting.Start(t, cmd)
	p, _ := a.Self()
	c, err := r.Consumer(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := uint32(0)
	for next < n {
		_, err := c.Read(ctx, func(typ uint32, b []byte) {
			_, seq, err := checkRecord(b)
			if err != nil || seq != next || typ != uint32(len(b)) {
				t.Fatalf("record %d: seq %d, type %d, %d bytes, %v", next, seq, typ, len(b), err)
			}
			next++
		}, 32)
		if err != nil {
			t.Fatalf("read after %d records: %v", next, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestProducerKilledMidRecord kills producer children with SIGKILL at random
// moments, many times; the parent unblocks the ring and starts another. The
// consumer only ever sees whole records, in order per producer, and never
// hangs.
func TestProducerKilledMidRecord(t *testing.T) {
	a, r := sharedRing(t)
	p, _ := a.Self()
	c, err := r.Consumer(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	total, unblocked := 0, 0
	for round := range rounds {
		prev := r.ProducerToken()
		cmd := xtesting.Command(t, "slowwriter", []*os.File{a.File()})
		xtesting.Start(t, cmd)
		pid := uint32(cmd.Process.Pid)
		// Until the child opened its end, Read sees the last (dead) producer.
		if !xtesting.Eventually(20*time.Second, func() bool { tok := r.ProducerToken(); return tok != 0 && tok != prev }) {
			t.Fatalf("round %d: the producer child never opened the ring", round)
		}
		next := uint32(0)
		check := func(typ uint32, b []byte) {
			from, seq, err := checkRecord(b)
			if err != nil || from != pid || seq != next || typ != uint32(len(b)) {
				t.Fatalf("round %d: record from %d seq %d (want %d from %d), type %d: %v", round, from, seq, next, pid, typ, err)
			}
			next++
			total++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		want := uint32(1 + rand.IntN(200))
		for next < want {
			if _, err := c.Read(ctx, check, 16); err != nil {
				t.Fatalf("round %d: read: %v", round, err)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		// Drain what it committed; Read then reports the producer dead.
		for {
			_, err := c.Read(ctx, check, 16)
			if errors.Is(err, ring.ErrPeerDead) {
				break
			}
			if err != nil {
				t.Fatalf("round %d: drain: %v", round, err)
			}
		}
		ok, err := r.Unblock(ctx)
		if err != nil {
			t.Fatalf("round %d: unblock: %v", round, err)
		}
		if ok {
			unblocked++
		}
		cancel()
	}
	t.Logf("%d rounds, %d records, %d claims unblocked", rounds, total, unblocked)
	if n, err := c.Poll(func(uint32, []byte) {}, 10); n != 0 || err != nil {
		t.Fatalf("Poll after the last unblock = %d, %v; want an empty ring", n, err)
	}
}

// TestProducerSeesDeadConsumer: the consumer's process is gone and the ring
// is full; Write returns ErrPeerDead instead of waiting out its context.
func TestProducerSeesDeadConsumer(t *testing.T) {
	a, r := sharedRing(t)
	cmd := xtesting.Command(t, "consumeexit", []*os.File{a.File()})
	xtesting.Start(t, cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	p, _ := a.Self()
	pr, err := r.Producer(context.Background(), p, &ring.Options{PeerCheck: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for {
		err := pr.TryWrite(1, make([]byte, 100))
		if errors.Is(err, ring.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pr.Write(ctx, 1, make([]byte, 100)); !errors.Is(err, ring.ErrPeerDead) {
		t.Fatalf("Write to a full ring with a dead consumer = %v; want ErrPeerDead", err)
	}
	// A new consumer takes over and gets everything.
	c, err := r.Consumer(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Poll(func(uint32, []byte) {}, 1000); n == 0 || err != nil {
		t.Fatalf("Poll = %d, %v; want the records", n, err)
	}
}
