package ring

import (
	"context"
	"testing"
	"time"
)

// TestSpinYieldsProcessor checks that both waiting ends give their processor
// away while they spin, and how often: a spinner that only pauses holds the
// processor that its peer needs to make progress whenever both share one
// (BenchmarkRingThroughput/ring-1cpu: 383-401 ns per record without yields,
// 43-99 ns with them). A consumer of an empty ring and a producer of a full one
// spin, sleep on the futex, and give up at the context's deadline.
func TestSpinYieldsProcessor(t *testing.T) {
	const spin = 1000
	want := 0
	for i := spinYieldAfter; i < spin; i++ {
		if i%spinYieldEvery == 0 {
			want++
		}
	}
	if want == 0 {
		t.Fatalf("a spin of %d re-checks never yields (spinYieldAfter %d)", spin, spinYieldAfter)
	}
	for _, tc := range []struct {
		name string
		spin int
		want int
	}{{"spinning", spin, want}, {"no spin", -1, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			_, pr, c := openRing(t, 4096, &Options{Spin: tc.spin, PeerCheck: time.Millisecond})
			yields := 0
			testHookYield = func() { yields++ }
			defer func() { testHookYield = nil }()

			// The consumer of an empty ring: a spin before each futex sleep
			// (short ones: the producer has not acknowledged), until the
			// deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := c.Read(ctx, func(uint32, []byte) {}, 1); err == nil {
				t.Fatal("Read of an empty ring returned no error")
			}
			if yields%max(tc.want, 1) != 0 || (yields == 0) != (tc.want == 0) {
				t.Errorf("consumer: %d yields in spins of %d re-checks, want a positive multiple of %d", yields, tc.spin, tc.want)
			}

			// The producer of a full ring: one spin, then futex sleeps.
			for pr.TryWrite(1, make([]byte, 100)) == nil {
			}
			yields = 0
			ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel2()
			if err := pr.Write(ctx2, 1, make([]byte, 100)); err == nil {
				t.Fatal("Write to a full ring returned no error")
			}
			if yields != tc.want {
				t.Errorf("producer: %d yields in a spin of %d re-checks, want %d", yields, tc.spin, tc.want)
			}
		})
	}
}
