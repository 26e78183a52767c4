package emitter_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
)

// fanout is the seam between two masters' emitters in one test process, as
// pub/sub on one channel joins them (package bridge's tests run it on a real
// Redis): Publish hands a copy of the message to every joined emitter, the
// publisher's included, each on its own goroutine in order; while down it
// refuses, as a Redis that is gone does.
type fanout struct {
	mu   sync.Mutex
	down bool
	subs []chan []byte
	errs chan error
}

var errFanoutDown = errors.New("fanout: down")

func newFanout(t *testing.T, ems ...*emitter.Emitter) *fanout {
	f := &fanout{errs: make(chan error, 64)}
	var wg sync.WaitGroup
	for _, em := range ems {
		ch := make(chan []byte, 256)
		f.subs = append(f.subs, ch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range ch {
				if err := em.FromBackplane(msg); err != nil {
					select {
					case f.errs <- err:
					default:
					}
				}
			}
		}()
		em.SetBackplane(f)
	}
	t.Cleanup(func() {
		f.mu.Lock()
		for _, ch := range f.subs {
			close(ch)
		}
		f.subs = nil
		f.mu.Unlock()
		wg.Wait()
		select {
		case err := <-f.errs:
			t.Errorf("FromBackplane: %v", err)
		default:
		}
	})
	return f
}

func (f *fanout) Publish(ctx context.Context, msg []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errFanoutDown
	}
	for _, ch := range f.subs {
		select {
		case ch <- append([]byte(nil), msg...):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fanout) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// seen is what the handlers of hosts-ping and hosts-pong report, one string
// per delivery: "<receiver> <host> <from> <n>", the receiver "master" or the
// worker's pid.
type seen struct{ ch chan string }

func newSeen(em *emitter.Emitter) *seen {
	s := &seen{ch: make(chan string, 64)}
	em.On("hosts-ping", func(e emitter.Event) {
		n, _ := emitter.Arg[int](e, 0)
		s.ch <- fmt.Sprintf("master %s %d %d", e.Host, e.From, n)
	})
	em.On("hosts-pong", func(e emitter.Event) {
		var pid, from, n int
		var host string
		e.Decode(&pid, &host, &from, &n)
		if e.Host != em.Host() {
			s.ch <- fmt.Sprintf("pong from another host %q", e.Host)
		}
		s.ch <- fmt.Sprintf("%d %s %d %d", pid, host, from, n)
	})
	return s
}

// expect waits for want, in any order, and then for 50 ms more: nothing
// else may come.
func (s *seen) expect(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case x := <-s.ch:
			got = append(got, x)
		case <-deadline:
			t.Fatalf("got %q; want %q", got, want)
		}
	}
	select {
	case x := <-s.ch:
		got = append(got, x)
	case <-time.After(50 * time.Millisecond):
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("got %q; want %q", got, want)
	}
}

// emitted waits for a worker's report of its emit-hosts.
func emitted(t *testing.T, ch chan emitter.Event, n int) (text string, backplane, none, tooLarge bool) {
	t.Helper()
	var got int
	e := recv(t, ch)
	if err := e.Decode(&got, &text, &backplane, &none, &tooLarge); err != nil || got != n {
		t.Fatalf("emitted %s: %v; want n = %d", e.Args, err, n)
	}
	return text, backplane, none, tooLarge
}

// Two hosts (two masters, each with a worker child, in two arenas) joined
// by a backplane: an event to AllHosts, from a master or from a worker,
// runs on every process of both, carrying its host of origin; the
// publisher's own copy is dropped as an echo; a backplane that refuses, no
// backplane, and an event too large for it are errors to the sender, from
// the master and from a worker, and counted.
func TestAllHostsAcrossTwoMasters(t *testing.T) {
	a := newTestCluster(t, 1, nil)
	b := newTestCluster(t, 1, nil)
	ha, hb := a.em.Host(), b.em.Host()
	if ha == hb || ha == "" {
		t.Fatalf("hosts %q and %q; want two ids", ha, hb)
	}
	bp := newFanout(t, a.em, b.em)
	sa, sb := newSeen(a.em), newSeen(b.em)
	done, reports := collect(8)
	a.em.On("emitted", done)
	me, wa, wb := a.em.Pid(), a.pids[0], b.pids[0]

	// From A's master: both masters, both workers, all with A's id.
	if err := a.em.To(emitter.AllHosts).Emit("hosts-ping", 1, ""); err != nil {
		t.Fatal(err)
	}
	sa.expect(t, fmt.Sprintf("master %s %d 1", ha, me), fmt.Sprintf("%d %s %d 1", wa, ha, me))
	sb.expect(t, fmt.Sprintf("master %s %d 1", ha, me), fmt.Sprintf("%d %s %d 1", wb, ha, me))

	// From A's worker: the master publishes it and says so.
	a.em.To(emitter.Pid(wa)).Emit("emit-hosts", 2, 0)
	if text, _, _, _ := emitted(t, reports, 2); text != "" {
		t.Fatalf("the worker's emit to AllHosts: %s", text)
	}
	sa.expect(t, fmt.Sprintf("master %s %d 2", ha, wa), fmt.Sprintf("%d %s %d 2", wa, ha, wa))
	sb.expect(t, fmt.Sprintf("master %s %d 2", ha, wa), fmt.Sprintf("%d %s %d 2", wb, ha, wa))
	st := a.em.Stats()
	if st.Published != 2 || st.Echoes != 2 || st.PublishFailed != 0 || b.em.Stats().FromHosts != 2 {
		t.Fatalf("A %+v, B %+v; want 2 published, 2 echoes, B 2 from hosts", st, b.em.Stats())
	}

	// The backplane refuses (Redis down): an error to the sender, this
	// host's processes served.
	bp.setDown(true)
	if err := a.em.To(emitter.AllHosts).Emit("hosts-ping", 3, ""); !errors.Is(err, emitter.ErrBackplane) || !errors.Is(err, errFanoutDown) {
		t.Fatalf("emit with the backplane down: %v; want ErrBackplane and its cause", err)
	}
	sa.expect(t, fmt.Sprintf("master %s %d 3", ha, me), fmt.Sprintf("%d %s %d 3", wa, ha, me))
	a.em.To(emitter.Pid(wa)).Emit("emit-hosts", 4, 0)
	if text, backplane, _, _ := emitted(t, reports, 4); !backplane {
		t.Fatalf("the worker's emit with the backplane down: %q; want ErrBackplane", text)
	}
	sa.expect(t, fmt.Sprintf("master %s %d 4", ha, wa), fmt.Sprintf("%d %s %d 4", wa, ha, wa))
	bp.setDown(false)

	// No backplane.
	a.em.SetBackplane(nil)
	if err := a.em.To(emitter.AllHosts).Emit("hosts-ping", 5, ""); !errors.Is(err, emitter.ErrNoBackplane) {
		t.Fatalf("emit without a backplane: %v; want ErrNoBackplane", err)
	}
	sa.expect(t, fmt.Sprintf("master %s %d 5", ha, me), fmt.Sprintf("%d %s %d 5", wa, ha, me))
	a.em.To(emitter.Pid(wa)).Emit("emit-hosts", 6, 0)
	if text, _, none, _ := emitted(t, reports, 6); !none {
		t.Fatalf("the worker's emit without a backplane: %q; want ErrNoBackplane", text)
	}
	sa.expect(t, fmt.Sprintf("master %s %d 6", ha, wa), fmt.Sprintf("%d %s %d 6", wa, ha, wa))
	a.em.SetBackplane(bp)

	// Too large for the backplane's frame (the host id counts): refused
	// before anything is delivered.
	big := a.em.MaxFrame() - len("hosts-ping") - 16
	if err := a.em.To(emitter.AllHosts).Emit("hosts-ping", 7, strings.Repeat("x", big)); !errors.Is(err, emitter.ErrTooLarge) {
		t.Fatalf("emit of a %d-byte argument: %v; want ErrTooLarge", big, err)
	}
	a.em.To(emitter.Pid(wa)).Emit("emit-hosts", 8, big)
	if text, _, _, tooLarge := emitted(t, reports, 8); !tooLarge {
		t.Fatalf("the worker's emit of %d bytes: %q; want ErrTooLarge", big, text)
	}
	sa.expect(t)
	sb.expect(t)
	if st := a.em.Stats(); st.PublishFailed != 5 || st.Published != 2 {
		t.Fatalf("A %+v; want 5 failed publications (down ×2, none ×2, too large), 2 published", st)
	}
}

// An emitter outside any cluster delivers an event to AllHosts to itself
// and, with no backplane, says it reached no other host.
func TestAllHostsUnattached(t *testing.T) {
	em := newLocal(t, nil)
	fn, got := collect(1)
	em.On("e", fn)
	if err := em.To(emitter.AllHosts).Emit("e", 1); !errors.Is(err, emitter.ErrNoBackplane) {
		t.Fatalf("Emit: %v; want ErrNoBackplane", err)
	}
	if e := recv(t, got); e.Host != em.Host() || e.From != em.Pid() {
		t.Fatalf("event from %d on %q; want this process on %q", e.From, e.Host, em.Host())
	}
	def := em.Host()
	if err := em.SetHost(strings.Repeat("h", emitter.MaxHost+1)); !errors.Is(err, emitter.ErrInvalidConfig) {
		t.Fatalf("SetHost of %d bytes: %v; want ErrInvalidConfig", emitter.MaxHost+1, err)
	}
	if err := em.SetHost("web1"); err != nil || em.Host() != "web1" {
		t.Fatalf("SetHost(web1): %v, Host %q", err, em.Host())
	}
	if err := em.SetHost(""); err != nil || em.Host() != def {
		t.Fatalf("SetHost(\"\"): %v, Host %q; want the default %q", err, em.Host(), def)
	}
	if err := em.FromBackplane([]byte("not a frame")); !errors.Is(err, emitter.ErrCorrupt) {
		t.Fatalf("FromBackplane of garbage: %v; want ErrCorrupt", err)
	}
}

// backplaneTo hands every message to one emitter, as a host's bridge would.
type backplaneTo struct{ em *emitter.Emitter }

func (b backplaneTo) Publish(_ context.Context, msg []byte) error { return b.em.FromBackplane(msg) }

// An event from a host whose rings are larger than this host's is refused
// when it is larger than this host's MaxFrame: the limit across hosts is the
// local one.
func TestFromBackplaneTooLarge(t *testing.T) {
	small := newLocal(t, &emitter.Options{RingSize: 64 << 10})
	big := newLocal(t, &emitter.Options{RingSize: 1 << 20})
	big.SetBackplane(backplaneTo{small})
	fn, got := collect(2)
	small.On("e", fn)
	arg := strings.Repeat("x", small.MaxFrame())
	if err := big.To(emitter.AllHosts).Emit("e", arg); !errors.Is(err, emitter.ErrBackplane) || !errors.Is(err, emitter.ErrTooLarge) {
		t.Fatalf("emit of %d bytes to a host of %d-byte frames: %v; want ErrBackplane wrapping ErrTooLarge", len(arg), small.MaxFrame(), err)
	}
	if err := big.To(emitter.AllHosts).Emit("e", "small"); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, got); e.Host != big.Host() || string(e.Args) != `["small"]` {
		t.Fatalf("got %s from %q; want only the small event, from %q", e.Args, e.Host, big.Host())
	}
}
