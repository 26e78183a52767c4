package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/emitter/emittertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func init() {
	children["emitterpeer"] = childEmitterPeer
	children["jsonpeer"] = childJSONPeer
}

// payload64 is the 64-byte argument of the throughput benchmarks.
var payload64 = strings.Repeat("x", 64)

// benchEmitterMaster makes an arena, attaches the master emitter (default
// options: 256 KiB rings) and starts the emitter peer in slot 1; it returns
// when the peer is ready.
func benchEmitterMaster(b *testing.B) (*emitter.Emitter, emitter.Target) {
	m := emittertest.NewMaster(b, &emitter.Options{})
	pid := m.Start(b, "emitterpeer", 1)
	m.WaitReady(b, 1)
	return m.Emitter, emitter.Pid(pid)
}

// childEmitterPeer is the worker side: ping → pong to the master; data is
// counted; end(n) → done once n data events arrived.
func childEmitterPeer() {
	em := emittertest.AttachWorker(nil)
	master := em.To(emitter.Master)
	em.On("ping", func(e emitter.Event) { master.Emit("pong", e.Args) })
	var count atomic.Int64
	em.On("data", func(emitter.Event) { count.Add(1) })
	em.On("end", func(e emitter.Event) {
		n, _ := emitter.Arg[int64](e, 0)
		for count.Load() < n {
			time.Sleep(50 * time.Microsecond)
		}
		count.Add(-n)
		master.Emit("done")
	})
	emittertest.Ready(em)
	emittertest.WaitMaster(em, time.Hour)
}

// jsonMsg is the unix-socket peer's message: what an emitter over a socket
// would send (sender, event name, JSON arguments).
type jsonMsg struct {
	From int             `json:"from"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args"`
}

// benchJSONPeer starts the JSON-over-unix-socket peer on one end of a
// socketpair and returns the other end.
func benchJSONPeer(b *testing.B) net.Conn {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	cmd := xtesting.Command(b, "jsonpeer", []*os.File{theirs})
	xtesting.Start(b, cmd)
	theirs.Close()
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// childJSONPeer: ping → pong; data counted; end(n) → done. One message per
// write: an emitter sends each event as it is emitted.
func childJSONPeer() {
	c, err := net.FileConn(os.NewFile(3, "conn"))
	if err != nil {
		panic(err)
	}
	dec, enc := json.NewDecoder(c), json.NewEncoder(c)
	me := os.Getpid()
	var count int64
	for {
		var m jsonMsg
		if err := dec.Decode(&m); err != nil {
			return
		}
		switch m.Name {
		case "ping":
			enc.Encode(jsonMsg{From: me, Name: "pong", Args: m.Args})
		case "data":
			count++
		case "end":
			var n []int64
			json.Unmarshal(m.Args, &n)
			count -= n[0]
			enc.Encode(jsonMsg{From: me, Name: "done", Args: json.RawMessage("[]")})
		}
	}
}

// BenchmarkEmitterRoundTrip: the master emits ping to a worker process,
// whose handler emits pong back; ns/op is one round trip, handler dispatch
// included on both sides.
func BenchmarkEmitterRoundTrip(b *testing.B) {
	b.Run("emitter", func(b *testing.B) {
		em, w := benchEmitterMaster(b)
		pong := make(chan struct{}, 1)
		em.On("pong", func(emitter.Event) { pong <- struct{}{} })
		to := em.To(w)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := to.Emit("ping", i); err != nil {
				b.Fatal(err)
			}
			<-pong
		}
	})
	b.Run("unix-json", func(b *testing.B) {
		c := benchJSONPeer(b)
		dec, enc := json.NewDecoder(c), json.NewEncoder(c)
		me := os.Getpid()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			args, _ := json.Marshal([]any{i})
			if err := enc.Encode(jsonMsg{From: me, Name: "ping", Args: args}); err != nil {
				b.Fatal(err)
			}
			var m jsonMsg
			if err := dec.Decode(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEmitterThroughput: the master emits 64-byte string arguments to
// one worker process as fast as it can; the worker's handler counts them.
// events/s covers the whole run up to the worker's acknowledgement.
func BenchmarkEmitterThroughput(b *testing.B) {
	b.Run("emitter", func(b *testing.B) { benchEmitterThroughput(b, payload64) })
	b.Run("unix-json", func(b *testing.B) { benchJSONThroughput(b, payload64) })
}

// benchEmitterThroughput emits payload to a worker process as fast as it can
// and reports events/s up to the worker's acknowledgement.
func benchEmitterThroughput(b *testing.B, payload string) {
	em, w := benchEmitterMaster(b)
	done := make(chan struct{}, 1)
	em.On("done", func(emitter.Event) { done <- struct{}{} })
	to := em.To(w)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
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
}

// benchJSONThroughput is benchEmitterThroughput's peer: the same events as
// JSON over a unix socket to an echo process.
func benchJSONThroughput(b *testing.B, payload string) {
	c := benchJSONPeer(b)
	dec, enc := json.NewDecoder(c), json.NewEncoder(c)
	me := os.Getpid()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
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
}
