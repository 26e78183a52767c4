package bridge_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/internal/redistest"
)

// recorder is a Target that remembers what it was told.
type recorder struct {
	mu    sync.Mutex
	keys  []string
	all   int
	steps []string // "all", "on" and "off", in order
	ch    chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 1024)} }

func (r *recorder) Invalidate(cache, key string) {
	r.mu.Lock()
	r.keys = append(r.keys, cache+"/"+key)
	r.mu.Unlock()
	r.ch <- cache + "/" + key
}

func (r *recorder) InvalidateAll() {
	r.mu.Lock()
	r.all++
	r.steps = append(r.steps, "all")
	r.mu.Unlock()
}

func (r *recorder) Tracking(on bool) {
	r.mu.Lock()
	r.steps = append(r.steps, map[bool]string{true: "on", false: "off"}[on])
	r.mu.Unlock()
}

// since returns the steps from the nth on, joined.
func (r *recorder) since(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.steps[min(n, len(r.steps)):], " ")
}

func (r *recorder) nsteps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.steps)
}

func (r *recorder) alls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all
}

// waitFor polls cond every 5 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func open(t *testing.T, srv *redistest.Server, caches ...string) *bridge.Bridge {
	t.Helper()
	b, err := bridge.Open(bridge.Config{Addr: srv.Addr(), Caches: caches, PingEvery: 50 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestTrackingInvalidatesOnAWriteByAnotherClient(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv, "demo", "other")
	rec := newRecorder()
	b.Track(rec)
	waitFor(t, 5*time.Second, "the bridge comes up", b.Up)
	if got := rec.alls(); got < 1 {
		t.Fatalf("InvalidateAll called %d times at connect, want at least 1 (what came before tracking is revalidated)", got)
	}
	if _, err := srv.CLI("SET", "cluster2:demo:k1", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI("SET", "unrelated:demo:k2", "v"); err != nil { // outside the prefixes: no invalidation
		t.Fatal(err)
	}
	if _, err := srv.CLI("DEL", "cluster2:other:k3"); err != nil { // absent: no change, no invalidation
		t.Fatal(err)
	}
	if _, err := srv.CLI("SET", "cluster2:other:k3", "v"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"demo/k1", "other/k3"} {
		select {
		case got := <-rec.ch:
			if got != want {
				t.Fatalf("invalidated %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no invalidation of %q", want)
		}
	}
	if st := b.Stats(); st.State != bridge.StateUp || st.Invalidations != 2 {
		t.Fatalf("stats %+v, want up with 2 invalidations", st)
	}
}

func TestPublishSubscribeAcrossBridges(t *testing.T) {
	srv := redistest.Start(t)
	a, bb := open(t, srv), open(t, srv)
	bb.Track(newRecorder())
	got := make(chan string, 8)
	cancel := bb.Subscribe("events", func(m []byte) { got <- string(m) })
	waitFor(t, 5*time.Second, "the bridge comes up", bb.Up)
	// The subscription is made once the connection is up; publish until it
	// is heard (a message before the SUBSCRIBE is lost: pub/sub keeps none).
	waitFor(t, 5*time.Second, "a published message is heard", func() bool {
		if err := a.Publish(context.Background(), "events", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m != "hello" {
				t.Fatalf("message %q", m)
			}
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	cancel()
	time.Sleep(50 * time.Millisecond)
	for len(got) > 0 {
		<-got
	}
	if err := a.Publish(context.Background(), "events", []byte("after")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("message %q after the subscription ended", m)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestRedisDiesAndComesBack(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv, "demo")
	rec := newRecorder()
	b.Track(rec)
	got := make(chan string, 8)
	b.Subscribe("ch", func(m []byte) { got <- string(m) })
	waitFor(t, 5*time.Second, "the bridge comes up", b.Up)
	// Tracking begins after the revalidation, ends before the stale marks:
	// package cache trusts what it reads from Redis only in between.
	if got := rec.since(0); got != "all on" {
		t.Fatalf("coming up: %q, want \"all on\"", got)
	}
	before, steps := rec.alls(), rec.nsteps()
	srv.Kill()
	waitFor(t, 5*time.Second, "the bridge goes down", func() bool { return !b.Up() })
	// (rueidis's own hook may mark them once before: Redis's FLUSHALL and a
	// lost connection look alike to it.)
	waitFor(t, 5*time.Second, "the stale marks", func() bool { return strings.Contains(rec.since(steps), "off all") })
	if got := rec.since(steps); strings.Contains(got, "on") {
		t.Fatalf("tracking while Redis is down: %q", got)
	}
	if st := b.Stats(); st.State != bridge.StateDown || st.Error == "" {
		t.Fatalf("stats %+v, want down with an error", st)
	}
	if rec.alls() <= before {
		t.Fatal("going down did not mark the distributed entries stale")
	}
	err := b.Publish(context.Background(), "ch", []byte("x"))
	if !errors.Is(err, bridge.ErrRedisDown) {
		t.Fatalf("Publish while down: %v, want ErrRedisDown", err)
	}
	down, steps := rec.alls(), rec.nsteps()
	srv.Restart()
	waitFor(t, 10*time.Second, "the bridge comes back", b.Up)
	if rec.alls() <= down {
		t.Fatal("reconnecting did not revalidate the distributed entries")
	}
	if got := rec.since(steps); !strings.HasSuffix(got, "all on") || strings.Count(got, "on") != 1 {
		t.Fatalf("coming back: %q, want failed attempts then \"all on\"", got)
	}
	if st := b.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats %+v, want 1 reconnect", st)
	}
	// Tracking and the subscription are back.
	if _, err := srv.CLI("SET", "cluster2:demo:k", "v"); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-rec.ch:
		if k != "demo/k" {
			t.Fatalf("invalidated %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no invalidation after the reconnect")
	}
	waitFor(t, 5*time.Second, "the subscription is back", func() bool {
		b.Publish(context.Background(), "ch", []byte("back"))
		select {
		case <-got:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
}

func TestOpenWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	b := open(t, srv, "demo")
	rec := newRecorder()
	b.Track(rec)
	time.Sleep(100 * time.Millisecond)
	if st := b.Stats(); st.State != bridge.StateConnecting {
		t.Fatalf("stats %+v, want connecting", st)
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "the bridge comes up", b.Up)
	if st := b.Stats(); st.Reconnects != 0 {
		t.Fatalf("stats %+v: the first connection is not a reconnect", st)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []bridge.Config{
		{},
		{Addr: "x:1", Caches: []string{"a:b"}},
		{Addr: "x:1", Caches: []string{""}},
		{Addr: "x:1", Caches: []string{"a", "a"}},
		{Addr: "x:1", PingEvery: -1},
		{Addr: "x:1", Timeout: -1},
	} {
		if err := c.Validate(); !errors.Is(err, bridge.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", c, err)
		}
	}
	if err := (bridge.Config{Addr: "x:1", Caches: []string{"users.v2", "a-b_c"}}).Validate(); err != nil {
		t.Error(err)
	}
}
