package cache

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cluster2/cluster2/shm"
)

// TestJournalClaimNeverGoesDown: a writer that dies inside the journal, after
// claiming past a lagging reader's record plus the capacity and overwriting
// part of it, leaves claim where it was: the next writer's lock recovery must
// not lower it (it used to set claim back to tail), or the lagging reader,
// which checks claim after copying, accepts the half-overwritten record as
// valid. Here the reader is the persister, reading after the recovery: with
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
	p, err := sp.AttachPersister(Never)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	j := &sp.jr
	p.Skip()

	// The record the persister lags on.
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
	p.cur = cur0
	var got []byte
	_, err = p.Read(1, func(r Record) error {
		got = append([]byte(nil), r.Value...)
		return nil
	})
	if !errors.Is(err, ErrJournalGap) {
		t.Fatalf("Read of a record a dead writer overwrote = %v (value intact: %v); want ErrJournalGap", err, bytes.Equal(got, good))
	}
}
