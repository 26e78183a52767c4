package ring_test

import (
	"context"
	"testing"
)

// BenchmarkWritePoll writes 64-byte records and polls them back in batches
// of 256 on one goroutine: the instructions of the commit and delivery paths,
// without the cross-core traffic (and the scheduling noise of a shared
// machine) of bench's RingThroughput.
func BenchmarkWritePoll(b *testing.B) {
	_, pr, c := newRing(b, 64<<10)
	var msg [64 - 8]byte
	fn := func(uint32, []byte) {}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(64)
	n := 0
	for b.Loop() {
		if err := pr.Write(ctx, 1, msg[:]); err != nil {
			b.Fatal(err)
		}
		if n++; n%256 == 0 {
			if _, err := c.Poll(fn, 256); err != nil {
				b.Fatal(err)
			}
		}
	}
}
