package ring_test

import (
	"testing"

	"github.com/cluster2/cluster2/ring"
)

// BenchmarkWritePoll writes 64-byte records and polls them back in batches
// of 256 on one goroutine: the instructions of the commit and delivery paths,
// without the cross-core traffic (and the scheduling noise of a shared
// machine) of bench's RingThroughput.
func BenchmarkWritePoll(b *testing.B) {
	_, pr, c := newRing(b, 64<<10)
	ring.WritePoll(b, pr, c)
}
