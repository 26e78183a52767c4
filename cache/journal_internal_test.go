package cache

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// TestJournalClaimNeverGoesDown: a writer that dies inside the journal, after
// claiming past a lagging reader's record plus the capacity and overwriting
// part of it, leaves claim where it was: the next writer's lock recovery must
// not lower it (it used to set claim back to tail), or the lagging reader,
// which checks claim after copying, accepts the half-overwritten record as
// valid. Here the reader is the log writer, reading after the recovery: with
// claim lowered it returned the damaged record; now it reports the gap.
func TestJournalClaimNeverGoesDown(t *testing.T) {
	bg := context.Background()
	a, err := shm.Create(shm.Options{Size: 16 << 20, Name: "claim"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sp, err := Setup(bg, a, SpaceOptions{Bytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c, err := sp.Use("p", Options{Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sp.Journal().Attach(Never)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	j := &sp.jr
	p.Skip()

	// The record the log writer lags on.
	cur0 := j.h.tail.Load()
	good := bytes.Repeat([]byte("A"), 200)
	sp.journalAppend(opSet, c.id, []byte("victim"), good, 0)
	// Fill the journal up to just below cur0 + cap: the record still reads
	// as valid at cur0.
	filler := make([]byte, 1000)
	for j.h.tail.Load()+2048 <= cur0+j.cap {
		sp.journalAppend(opSet, c.id, []byte("fill"), filler, 0)
	}
	// A writer claims 2 KiB, enough to wrap over the victim, overwrites part
	// of its value, and dies holding the lock.
	other, err := a.Join(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.h.lock.Lock(bg, other); err != nil {
		t.Fatal(err)
	}
	deadClaim := j.h.tail.Load() + 2048
	if deadClaim <= cur0+j.cap {
		t.Fatalf("set-up: the dead writer's claim %d does not pass the victim's lap %d", deadClaim, cur0+j.cap)
	}
	j.h.claim.Store(deadClaim)
	phys := cur0 & (j.cap - 1)
	copy(j.data[phys+jrecHeader+uint64(len("victim"))+100:], bytes.Repeat([]byte("B"), 100))
	other.Leave() // the lock is abandoned: the next writer recovers it

	// The next writer recovers the lock and appends a small record.
	sp.journalAppend(opDel, c.id, []byte("next"), nil, 0)
	if got := j.h.claim.Load(); got < deadClaim {
		t.Errorf("claim went down from the dead writer's %d to %d on lock recovery", deadClaim, got)
	}

	// The lagging reader reads the victim now.
	p.(*cursor).cur = cur0
	var got []byte
	_, err = p.Read(1, func(r persist.Record) error {
		got = append([]byte(nil), r.Value...)
		return nil
	})
	if !errors.Is(err, persist.ErrJournalGap) {
		t.Fatalf("Read of a record a dead writer overwrote = %v (value intact: %v); want ErrJournalGap", err, bytes.Equal(got, good))
	}
}

// newPersistSpace returns a space of a fresh arena with a persistent cache
// of durability d, and this process as its log writer (everything before
// durable).
func newPersistSpace(t *testing.T, d Durability) (*shm.Arena, *Space, *Cache, persist.Cursor) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 16 << 20, Name: "journal-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	sp, err := Setup(context.Background(), a, SpaceOptions{Bytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	c, err := sp.Use("p", Options{Persist: true, Durability: d})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sp.Journal().Attach(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Detach)
	p.Logged(p.Skip())
	p.Durable(p.Position())
	return a, sp, c, p
}

// A journal append that gives up (the lock held by a live process that does
// not run: here a second slot of this process, so it counts as alive) must
// not be acknowledged, for any durability: the Set returns ErrNotDurable (the
// value is in the cache), and the log writer's next Read reports a gap so
// that it snapshots; the snapshot's scan sees the value, and once the gap is
// covered Read goes on normally. (Before: an Always Set returned (true, nil)
// with nothing journaled.)
func TestJournalGiveUpIsNotDurable(t *testing.T) {
	defer func(w time.Duration) { journalLockWait = w }(journalLockWait)
	journalLockWait = 100 * time.Millisecond
	bg := context.Background()
	for _, d := range []Durability{Always, EverySecond, Never} {
		t.Run(d.String(), func(t *testing.T) {
			a, sp, c, p := newPersistSpace(t, d)
			other, err := a.Join(0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sp.jr.h.lock.Lock(bg, other); err != nil {
				t.Fatal(err)
			}
			tail0 := sp.jr.h.tail.Load()
			ok, err := c.Set(bg, "held", []byte("v"), SetOptions{})
			_, _, derr := c.Del(bg, "held")
			ok2, err2 := c.Set(bg, "held", []byte("w"), SetOptions{})
			tail1 := sp.jr.h.tail.Load()
			sp.jr.h.lock.Unlock(other)
			if tail1 != tail0 {
				t.Fatalf("the journal moved (%d -> %d) while its lock was held", tail0, tail1)
			}
			if !ok || !errors.Is(err, ErrNotDurable) || !ok2 || !errors.Is(err2, ErrNotDurable) {
				t.Fatalf("Set with the journal lock held = %v, %v / %v, %v; want true, ErrNotDurable", ok, err, ok2, err2)
			}
			if !errors.Is(derr, ErrNotDurable) {
				t.Fatalf("Del with the journal lock held = %v; want ErrNotDurable", derr)
			}
			if v, ok, _ := c.GetInto(nil, "held"); !ok || string(v) != "w" {
				t.Fatalf("the value not journaled is not in the cache: %q, %v", v, ok)
			}
			if _, err := p.Read(100, func(persist.Record) error { return nil }); !errors.Is(err, persist.ErrJournalGap) {
				t.Fatalf("log writer's Read after a lost append = %v; want ErrJournalGap", err)
			}
			covered := p.CoverGaps()
			found := false
			if err := sp.Journal().Scan(bg, func(m persist.Mutation) error {
				found = found || m.Op == persist.OpSet && m.Key == "held" && string(m.Value) == "w"
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !found {
				t.Fatal("the snapshot's scan does not see the value that was not journaled")
			}
			covered()
			actx, cancel := context.WithTimeout(bg, 20*time.Millisecond) // Always: nobody says durable
			defer cancel()
			if _, err := c.Set(actx, "after", []byte("x"), SetOptions{}); d != Always && err != nil {
				t.Fatal(err)
			}
			seen := false
			if _, err := p.Read(100, func(r persist.Record) error {
				seen = seen || string(r.Key) == "after"
				return nil
			}); err != nil || !seen {
				t.Fatalf("Read after the gap was covered = %v (saw the next Set: %v)", err, seen)
			}
			if st := sp.Journal().Stats(); st.GapRequests != 3 {
				t.Fatalf("Journal().Stats().GapRequests = %d; want 3", st.GapRequests)
			}
		})
	}
}

// While the log writer says it cannot write its log, Set and Del of a
// persistent cache are refused with ErrPersistFailing and change nothing;
// an Always writer already waiting returns ErrNotDurable wrapping it; the
// stats name the errno; a cache that does not persist is not concerned; and
// once the log writer can write again, Sets succeed by themselves.
func TestPersistFailingRefusesChanges(t *testing.T) {
	bg := context.Background()
	_, sp, c, p := newPersistSpace(t, Always)
	plain, err := sp.Use("plain", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := sp.Use("ev", Options{Persist: true, Durability: EverySecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Set(bg, "kept", []byte("1"), SetOptions{}); err != nil {
		t.Fatal(err)
	}
	tail0 := p.Tail()
	waiting := make(chan error, 1)
	go func() {
		_, err := c.Set(bg, "waiting", []byte("v"), SetOptions{})
		waiting <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for p.Tail() == tail0 { // until the waiter's record is in the journal
		if time.Now().After(deadline) {
			t.Fatal("the Always writer's record never reached the journal")
		}
		time.Sleep(time.Millisecond)
	}
	if !p.SetFailing(syscall.ENOSPC) || p.SetFailing(syscall.ENOSPC) {
		t.Fatal("SetFailing does not report the change of state")
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrNotDurable) || !errors.Is(err, ErrPersistFailing) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("waiting Always Set when the log writer began failing = %v; want ErrNotDurable, ErrPersistFailing, ENOSPC", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting Always writer did not return when the log writer began failing")
	}
	tail := sp.jr.h.tail.Load()
	for _, cc := range []*Cache{c, ev} {
		if ok, err := cc.Set(bg, "refused", []byte("v"), SetOptions{}); ok || !errors.Is(err, ErrPersistFailing) || errors.Is(err, ErrNotDurable) {
			t.Fatalf("Set of %s while failing = %v, %v; want false, ErrPersistFailing (not ErrNotDurable)", cc.Name(), ok, err)
		}
	}
	if _, ok, err := ev.Del(bg, "kept"); ok || !errors.Is(err, ErrPersistFailing) {
		t.Fatalf("Del while failing = %v, %v; want ErrPersistFailing", ok, err)
	}
	if _, ok, _ := ev.GetInto(nil, "kept"); !ok {
		t.Fatal("a refused Del deleted")
	}
	if _, ok, _ := ev.GetInto(nil, "refused"); ok {
		t.Fatal("a refused Set stored")
	}
	if sp.jr.h.tail.Load() != tail {
		t.Fatal("refused changes reached the journal")
	}
	if _, err := plain.Set(bg, "k", []byte("v"), SetOptions{}); err != nil {
		t.Fatalf("Set of a cache that does not persist while failing = %v", err)
	}
	st := sp.Journal().Stats()
	if !errors.Is(st.Failing, ErrPersistFailing) || !errors.Is(st.Failing, syscall.ENOSPC) || st.FailingSince.IsZero() || st.Failures != 1 {
		t.Fatalf("Journal().Stats() while failing = %+v", st)
	}
	if !p.SetFailing(nil) {
		t.Fatal("SetFailing(nil) does not report the change of state")
	}
	if st := sp.Journal().Stats(); st.Failing != nil || !st.FailingSince.IsZero() || st.Failures != 1 {
		t.Fatalf("Journal().Stats() after the failure = %+v", st)
	}
	if ok, err := ev.Set(bg, "again", []byte("v"), SetOptions{}); !ok || err != nil {
		t.Fatalf("Set after the failure = %v, %v", ok, err)
	}
}

// Rewind reads records again from an earlier position and lowers the logged
// position; rewound past what the journal still holds, Read reports a gap.
func TestLogWriterRewind(t *testing.T) {
	bg := context.Background()
	_, sp, _, p := newPersistSpace(t, Never)
	c, err := sp.Use("n", Options{Persist: true, Durability: Never})
	if err != nil {
		t.Fatal(err)
	}
	start := p.Position()
	for _, k := range []string{"a", "b"} {
		if _, err := c.Set(bg, k, []byte("v"), SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func() (out string) {
		if _, err := p.Read(100, func(r persist.Record) error {
			if r.Op != persist.OpDefine {
				out += string(r.Key)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if k := keys(); k != "ab" {
		t.Fatalf("read %q", k)
	}
	p.Logged(p.Position())
	p.Rewind(start)
	if sp.jr.h.logged.Load() != start {
		t.Fatal("Rewind did not lower the logged position")
	}
	if k := keys(); k != "ab" {
		t.Fatalf("read %q after Rewind; want the same records again", k)
	}
	// Lap the journal past start.
	big := make([]byte, sp.maxJournalValue())
	for sp.jr.h.tail.Load()-start <= sp.jr.cap {
		if _, err := c.Set(bg, "big", big, SetOptions{}); err != nil {
			t.Fatal(err)
		}
		p.Logged(sp.jr.h.tail.Load()) // keep the throttle quiet
	}
	p.Rewind(start)
	if _, err := p.Read(100, func(persist.Record) error { return nil }); !errors.Is(err, persist.ErrJournalGap) {
		t.Fatalf("Read rewound past the journal = %v; want ErrJournalGap", err)
	}
}
