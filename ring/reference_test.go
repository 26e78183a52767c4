package ring_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cluster2/cluster2/ring"
)

// model is the reference: a queue of records plus exact byte positions, so
// that it predicts not only what Poll delivers but also when TryWrite must
// find the ring full.
type model struct {
	cap        uint64
	tail, head uint64 // head: what the consumer published
	pos        uint64 // what the consumer consumed
	q          []modelRec
}

type modelRec struct {
	pad     bool
	size    uint64
	typ     uint32
	payload []byte
}

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

// write predicts TryWrite: nil, ErrTooLarge or ErrFull.
func (m *model) write(typ uint32, p []byte) error {
	size := align8(uint64(8 + len(p)))
	if size > m.cap {
		return ring.ErrTooLarge
	}
	if i := m.tail % m.cap; i+size > m.cap {
		pad := m.cap - i
		if m.tail+pad-m.head > m.cap {
			return ring.ErrFull
		}
		m.tail += pad
		m.q = append(m.q, modelRec{pad: true, size: pad})
	}
	if m.tail+size-m.head > m.cap {
		return ring.ErrFull
	}
	m.tail += size
	m.q = append(m.q, modelRec{size: size, typ: typ, payload: bytes.Clone(p)})
	return nil
}

// poll predicts Poll(max).
func (m *model) poll(max int) []modelRec {
	var out []modelRec
	for len(out) < max && len(m.q) > 0 {
		r := m.q[0]
		m.q = m.q[1:]
		m.pos += r.size
		if !r.pad {
			out = append(out, r)
		}
		if m.pos-m.head >= m.cap/64 { // published every 64th of the capacity
			m.head = m.pos
		}
	}
	if len(out) < max { // and when Poll finds the ring empty
		m.head = m.pos
	}
	return out
}

// runModel drives a ring of capacity bytes and the model with the same
// operations, taken from next until it returns false, and fails at the first
// difference.
func runModel(t *testing.T, capacity int, next func() (write bool, typ uint32, n int, ok bool)) {
	_, pr, c := newRing(t, capacity)
	m := &model{cap: uint64(capacity)}
	seq := byte(0)
	for step := 0; ; step++ {
		write, typ, n, ok := next()
		if !ok {
			break
		}
		if write {
			seq++
			p := payload(n, seq)
			want := m.write(typ, p)
			got := pr.TryWrite(typ, p)
			if !errors.Is(got, want) || (want == nil) != (got == nil) {
				t.Fatalf("step %d: TryWrite(%d bytes) = %v; model says %v", step, n, got, want)
			}
			continue
		}
		want := m.poll(n)
		var got []rec
		k, err := c.Poll(func(typ uint32, p []byte) { got = append(got, rec{typ, bytes.Clone(p)}) }, n)
		if err != nil || k != len(got) || len(got) != len(want) {
			t.Fatalf("step %d: Poll(%d) = %d, %v (%d records); model says %d", step, n, k, err, len(got), len(want))
		}
		for i := range got {
			if got[i].typ != want[i].typ || !bytes.Equal(got[i].payload, want[i].payload) {
				t.Fatalf("step %d: record %d: got type %d %x; want type %d %x", step, i, got[i].typ, got[i].payload, want[i].typ, want[i].payload)
			}
		}
	}
	// Whatever is left comes out whole.
	want := m.poll(1 << 30)
	got := drain(t, c)
	if len(got) != len(want) {
		t.Fatalf("final drain: %d records; model says %d", len(got), len(want))
	}
}

// TestDifferential drives the ring and the model with random operations.
func TestDifferential(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	for _, capacity := range []int{64, 256, 4096} {
		steps := 0
		runModel(t, capacity, func() (bool, uint32, int, bool) {
			steps++
			if steps > 20000 {
				return false, 0, 0, false
			}
			if rng.IntN(3) != 0 {
				n := rng.IntN(capacity / 3)
				if rng.IntN(50) == 0 {
					n = rng.IntN(capacity + 16) // sometimes too large, sometimes whole-ring
				}
				return true, rng.Uint32(), n, true
			}
			return false, 0, 0, true
		})
		_ = capacity
	}
}

// TestDifferentialBlocking runs the blocking API in two goroutines against
// the channel model: every record arrives once, in order, whole.
func TestDifferentialBlocking(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	_, pr, c := newRing(t, 256)
	const n = 5000
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = rng.IntN(200)
	}
	ch := make(chan rec, n) // the model: what was sent, in order
	go func() {
		for i, s := range sizes {
			p := payload(s, byte(i))
			ch <- rec{uint32(i), p}
			if err := pr.Write(context.Background(), uint32(i), p); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got := 0; got < n; {
		_, err := c.Read(ctx, func(typ uint32, p []byte) {
			want := <-ch
			if typ != want.typ || !bytes.Equal(p, want.payload) {
				t.Fatalf("record %d: got type %d (%d bytes); want type %d (%d bytes)", got, typ, len(p), want.typ, len(want.payload))
			}
			got++
		}, 1+rng.IntN(8))
		if err != nil {
			t.Fatalf("after %d records: %v", got, err)
		}
	}
}
