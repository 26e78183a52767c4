package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
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
		b.Run("payload-"+name+"/emitter", func(b *testing.B) {
			em, w := benchEmitterMaster(b)
			done := make(chan struct{}, 1)
			em.On("done", func(emitter.Event) { done <- struct{}{} })
			to := em.To(w)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			start, n := time.Now(), 0
			for b.Loop() {
				if err := to.Emit("data", payload); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := to.Emit("end", n); err != nil {
				b.Fatal(err)
			}
			<-done
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		})
		b.Run("payload-"+name+"/unix-json", func(b *testing.B) {
			c := benchJSONPeer(b)
			dec, enc := json.NewDecoder(c), json.NewEncoder(c)
			me := os.Getpid()
			b.ReportAllocs()
			b.SetBytes(int64(size))
			start, n := time.Now(), 0
			for b.Loop() {
				args, _ := json.Marshal([]any{payload})
				if err := enc.Encode(jsonMsg{From: me, Name: "data", Args: args}); err != nil {
					b.Fatal(err)
				}
				n++
			}
			enc.Encode(jsonMsg{From: me, Name: "end", Args: json.RawMessage(fmt.Sprintf("[%d]", n))})
			var m jsonMsg
			if err := dec.Decode(&m); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		})
	}
}
