package bench

import (
	"strings"
	"testing"
)

// BenchmarkScaleEmitterThroughput: BenchmarkEmitterThroughput's measurement
// (the master emits one string argument to a worker process as fast as it
// can; events/s up to the worker's acknowledgement) with 64 B, 1 KiB and
// 64 KiB arguments, against the unix-socket JSON peer in the same run. An
// event frame holds at most 64 KiB with its header, so the largest size is
// 64 KiB less 64 bytes ("64KiB" in the name).
func BenchmarkScaleEmitterThroughput(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64<<10 - 64} {
		name := map[int]string{64: "64B", 1 << 10: "1KiB", 64<<10 - 64: "64KiB"}[size]
		payload := strings.Repeat("x", size)
		b.Run("payload-"+name+"/emitter", func(b *testing.B) { benchEmitterThroughput(b, payload) })
		b.Run("payload-"+name+"/unix-json", func(b *testing.B) { benchJSONThroughput(b, payload) })
	}
}
