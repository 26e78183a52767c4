package bridge_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/emitter/emittertest"
	"github.com/cluster2/cluster2/internal/redistest"
)

// host is one host's master side for the events tests: a master emitter in
// an arena of its own and a tracking bridge to the shared Redis, joined by
// ConnectEvents.
type host struct {
	em  *emitter.Emitter
	b   *bridge.Bridge
	ev  *bridge.Events
	got chan emitter.Event
}

func newHost(t *testing.T, srv *redistest.Server) *host {
	h := &host{em: emittertest.NewMaster(t, nil).Emitter, b: open(t, srv), got: make(chan emitter.Event, 64)}
	h.b.Track(newRecorder())
	h.ev = bridge.ConnectEvents(h.b, h.em)
	t.Cleanup(h.ev.Close)
	h.em.On("deploy", func(e emitter.Event) { h.got <- e })
	return h
}

// heard emits deploy(n) to AllHosts from h until to's master hears it (a
// message published before to's SUBSCRIBE is lost: pub/sub keeps none), and
// returns what to received.
func (h *host) heard(t *testing.T, to *host, n int) emitter.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := h.em.To(emitter.AllHosts).Emit("deploy", n); err != nil && !errors.Is(err, bridge.ErrRedisDown) {
			t.Fatal(err)
		}
		for {
			select {
			case e := <-to.got:
				if got, _ := emitter.Arg[int](e, 0); got == n && e.Host == h.em.Host() {
					return e
				}
				continue
			case <-time.After(20 * time.Millisecond):
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s did not hear deploy(%d) from %s in 10 s", to.em.Host(), n, h.em.Host())
		}
	}
}

// Two hosts (two masters' emitters, each with its bridge) on one Redis: an
// event to AllHosts on A runs on B's master with A as its origin, and A's
// copy comes back to A and is dropped; with Redis killed the emit returns
// an error wrapping emitter.ErrBackplane and bridge.ErrRedisDown; restarted,
// the events flow again (the subscriptions were made again).
func TestEventsAcrossHostsOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newHost(t, srv), newHost(t, srv)
	waitFor(t, 5*time.Second, "both bridges come up", func() bool { return a.b.Up() && b.b.Up() })

	e := a.heard(t, b, 1)
	if e.From != a.em.Pid() {
		t.Fatalf("event from %d; want A's master %d", e.From, a.em.Pid())
	}
	waitFor(t, 5*time.Second, "A's own events come back and are dropped", func() bool { return a.em.Stats().Echoes > 0 })
	if st := b.em.Stats(); st.FromHosts == 0 || st.Echoes != 0 {
		t.Fatalf("B's emitter %+v; want events from A, no echo", st)
	}
	b.heard(t, a, 2) // and back

	for drained := false; !drained; { // what A heard so far (its own deploy(1)s, B's deploy(2)s)
		select {
		case <-a.got:
		case <-time.After(100 * time.Millisecond):
			drained = true
		}
	}
	srv.Kill()
	failedBefore := a.em.Stats().PublishFailed
	err := a.em.To(emitter.AllHosts).Emit("deploy", 3)
	if !errors.Is(err, emitter.ErrBackplane) || !errors.Is(err, bridge.ErrRedisDown) {
		t.Fatalf("emit with Redis killed: %v; want ErrBackplane wrapping bridge.ErrRedisDown", err)
	}
	if got := a.em.Stats().PublishFailed; got != failedBefore+1 {
		t.Fatalf("PublishFailed %d; want %d", got, failedBefore+1)
	}
	select {
	case e := <-a.got: // this host's own delivery still happened
		if n, _ := emitter.Arg[int](e, 0); n != 3 {
			t.Fatalf("A got deploy(%d); want 3", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("A's own listener did not get the event")
	}

	srv.Restart()
	waitFor(t, 10*time.Second, "both bridges come back", func() bool { return a.b.Up() && b.b.Up() })
	a.heard(t, b, 4)
	if st := b.ev.Stats(); st.Received == 0 || st.Dropped != 0 || st.Bad != 0 {
		t.Fatalf("B's events %+v; want messages, none dropped or bad", st)
	}
}

// A message on the events channel that is no host's event (here a
// redis-cli PUBLISH) is refused by the emitter and counted, and delivers
// nothing.
func TestEventsChannelRefusesGarbage(t *testing.T) {
	srv := redistest.Start(t)
	a := newHost(t, srv)
	waitFor(t, 5*time.Second, "the bridge comes up", a.b.Up)
	waitFor(t, 5*time.Second, "the garbage is refused", func() bool {
		if _, err := srv.CLI("PUBLISH", a.b.EventsChannel(), "not an event"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		return a.ev.Stats().Bad > 0
	})
	if err := a.em.To(emitter.AllHosts).Emit("deploy", 1); err != nil {
		t.Fatal(err)
	}
	if e := <-a.got; e.Host != a.em.Host() {
		t.Fatalf("event from %q; want this host's own", e.Host)
	}
}
