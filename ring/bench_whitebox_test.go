package ring

import (
	"context"
	"testing"
)

// BenchmarkCommitMode is BenchmarkWritePoll with the consumer reading
// (sleepGen even: commits by release store) and announced as a possible
// sleeper (sleepGen odd: commits by sequentially consistent store).
func BenchmarkCommitMode(b *testing.B) {
	for _, mode := range []string{"release", "fenced"} {
		b.Run(mode, func(b *testing.B) {
			r, pr, c := openRing(b, 64<<10, nil)
			if mode == "fenced" {
				r.h.sleepGen.Store(1) // as Read does before it sleeps
			}
			writePoll(b, pr, c)
		})
	}
}

// writePoll is the loop of BenchmarkWritePoll and BenchmarkCommitMode: b.Loop
// writes 64-byte records through pr and polls them back through c in
// batches of 256, on one goroutine.
func writePoll(b *testing.B, pr *Producer, c *Consumer) {
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
