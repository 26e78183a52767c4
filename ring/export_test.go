package ring

import (
	"context"
	"testing"

	"github.com/cluster2/cluster2/shm/shmtest"
)

// WritePoll is writePoll, for the external test package's
// BenchmarkWritePoll.
var WritePoll = writePoll

// openRing makes a ring of capacity bytes in a fresh 1 MiB arena and returns
// it with a producer and a consumer of this process, both with opts.
func openRing(tb testing.TB, capacity int, opts *Options) (*Ring, *Producer, *Consumer) {
	tb.Helper()
	a := shmtest.NewArena(tb, 1<<20)
	off, err := a.Alloc(context.Background(), Size(capacity))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := Init(a, off, capacity)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := a.Self()
	pr, err := r.Producer(context.Background(), p, opts)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := r.Consumer(p, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return r, pr, c
}
