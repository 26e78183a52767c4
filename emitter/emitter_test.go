package emitter_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func newLocal(t *testing.T, opts *emitter.Options) *emitter.Emitter {
	t.Helper()
	em, err := emitter.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	return em
}

// collect returns a handler that sends every event to a channel.
func collect(n int) (func(emitter.Event), chan emitter.Event) {
	ch := make(chan emitter.Event, n)
	return func(e emitter.Event) { ch <- e }, ch
}

func recv(t *testing.T, ch chan emitter.Event) emitter.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return emitter.Event{}
	}
}

func TestLocalDeliveryAndDecode(t *testing.T) {
	em := newLocal(t, nil)
	fn, ch := collect(4)
	em.On("greet", fn)
	type point struct{ X, Y int }
	if err := em.Emit("greet", "hi", 3, point{1, 2}); err != nil {
		t.Fatal(err)
	}
	e := recv(t, ch)
	var s string
	var n int
	var p point
	if err := e.Decode(&s, &n, &p); err != nil {
		t.Fatal(err)
	}
	if e.From != em.Pid() || e.Name != "greet" || s != "hi" || n != 3 || p != (point{1, 2}) {
		t.Fatalf("got %+v (%q %d %+v); want greet from %d, hi 3 {1 2}", e, s, n, p, em.Pid())
	}
	if got, err := emitter.Arg[point](e, 2); err != nil || got != p {
		t.Fatalf("Arg: got %+v, %v; want %+v", got, err, p)
	}
	if _, err := emitter.Arg[int](e, 0); !errors.Is(err, emitter.ErrArgs) {
		t.Fatalf("Arg of a string as int: got %v; want ErrArgs", err)
	}
	if _, err := emitter.Arg[int](e, 5); !errors.Is(err, emitter.ErrArgs) {
		t.Fatalf("missing Arg: got %v; want ErrArgs", err)
	}
	// Raw JSON arguments pass as they are.
	if err := em.Emit("greet", json.RawMessage(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, ch); string(e.Args) != `[{"a":1}]` {
		t.Fatalf("got args %s; want [{\"a\":1}]", e.Args)
	}
	if err := em.Emit("greet", json.RawMessage(`{`)); !errors.Is(err, emitter.ErrArgs) {
		t.Fatalf("invalid raw: got %v; want ErrArgs", err)
	}
	if err := em.Emit("greet", func() {}); !errors.Is(err, emitter.ErrArgs) {
		t.Fatalf("func argument: got %v; want ErrArgs", err)
	}
}

func TestTargetsOutsideACluster(t *testing.T) {
	em := newLocal(t, nil)
	fn, ch := collect(8)
	em.On("e", fn)
	for _, ts := range [][]emitter.Target{{emitter.Self}, {emitter.Master}, {emitter.Pid(em.Pid())}, {emitter.Self, emitter.Master}} {
		if err := em.To(ts...).Emit("e"); err != nil {
			t.Fatal(err)
		}
		recv(t, ch)
	}
	before := em.Stats().Dropped
	if err := em.To(emitter.Pid(1 << 30)).Emit("e"); err != nil {
		t.Fatalf("unknown pid: got %v; want nil (dropped)", err)
	}
	if got := em.Stats().Dropped - before; got != 1 {
		t.Fatalf("dropped %d; want 1", got)
	}
	if err := em.To().Emit("e"); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ch:
		t.Fatalf("got %+v for an empty target list; want nothing", e)
	case <-time.After(20 * time.Millisecond):
	}
}

func TestOnceOffRemoveAll(t *testing.T) {
	em := newLocal(t, nil)
	var once, on atomic.Int64
	em.Once("e", func(emitter.Event) { once.Add(1) })
	l := em.On("e", func(emitter.Event) { on.Add(1) })
	fn, ch := collect(100)
	em.On("e", fn)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				em.Emit("e")
			}
		})
	}
	wg.Wait()
	for range 40 {
		recv(t, ch)
	}
	if !xtesting.Eventually(5*time.Second, func() bool { return once.Load() == 1 }) || once.Load() != 1 {
		t.Fatalf("Once ran %d times; want 1", once.Load())
	}
	if em.Listeners("e") != 2 {
		t.Fatalf("%d listeners after Once fired; want 2", em.Listeners("e"))
	}
	if !xtesting.Eventually(5*time.Second, func() bool { return on.Load() == 40 }) {
		t.Fatalf("On ran %d times; want 40", on.Load())
	}
	em.Off(l)
	em.Emit("e")
	recv(t, ch)
	if on.Load() != 40 {
		t.Fatalf("On ran %d times after Off; want 40", on.Load())
	}
	em.Off(l) // twice: nothing
	em.RemoveAll("e")
	if em.Listeners("e") != 0 {
		t.Fatalf("%d listeners after RemoveAll; want 0", em.Listeners("e"))
	}
}

func TestOffFromOwnHandler(t *testing.T) {
	em := newLocal(t, nil)
	var calls atomic.Int64
	var l *emitter.Listener
	ready := make(chan struct{})
	l = em.On("e", func(emitter.Event) {
		<-ready
		calls.Add(1)
		em.Off(l)
	})
	close(ready)
	for range 10 {
		em.Emit("e")
	}
	time.Sleep(20 * time.Millisecond)
	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times after removing itself; want 1", calls.Load())
	}
}

func TestSlowHandlerDoesNotStallOthers(t *testing.T) {
	em := newLocal(t, nil)
	block := make(chan struct{})
	defer close(block)
	em.On("e", func(emitter.Event) { <-block })
	fn, ch := collect(100)
	em.On("e", fn)
	for range 50 {
		if err := em.Emit("e"); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		recv(t, ch)
	}
}

func TestFullQueueWaitsBoundedByContext(t *testing.T) {
	em := newLocal(t, &emitter.Options{QueueLen: 2})
	block := make(chan struct{})
	defer close(block)
	em.On("e", func(emitter.Event) { <-block })
	var err error
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err = em.EmitContext(ctx, "e")
		cancel()
		if err != nil {
			break
		}
	}
	if !errors.Is(err, emitter.ErrQueueFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want ErrQueueFull and DeadlineExceeded", err)
	}
}

func TestBadNamesAndSizes(t *testing.T) {
	em := newLocal(t, &emitter.Options{RingSize: 4 << 10})
	if err := em.Emit(""); !errors.Is(err, emitter.ErrBadName) {
		t.Fatalf("empty name: got %v; want ErrBadName", err)
	}
	if err := em.Emit(strings.Repeat("x", emitter.MaxName+1)); !errors.Is(err, emitter.ErrBadName) {
		t.Fatalf("long name: got %v; want ErrBadName", err)
	}
	if err := em.Emit("e", strings.Repeat("x", em.MaxFrame())); !errors.Is(err, emitter.ErrTooLarge) {
		t.Fatalf("large payload: got %v; want ErrTooLarge", err)
	}
	if err := em.Emit("e", strings.Repeat("x", em.MaxFrame()-20)); err != nil {
		t.Fatalf("payload just below the limit: %v", err)
	}
	if _, err := emitter.New(&emitter.Options{RingSize: 1000}); !errors.Is(err, emitter.ErrInvalidConfig) {
		t.Fatalf("bad ring size: got %v; want ErrInvalidConfig", err)
	}
	em.Close()
	if err := em.Emit("e"); !errors.Is(err, emitter.ErrClosed) {
		t.Fatalf("after Close: got %v; want ErrClosed", err)
	}
}
