package proc

import (
	"context"
	"testing"

	"github.com/cluster2/cluster2/shm/shmtest"
)

// TestDrainWinsRaceWithPause forces the interleaving that lost a drain when
// SetWant checked, then stored: a Stop's SetWant(WantDrain) lands between a
// Pause's check of the current want and its store. The drain must survive.
func TestDrainWinsRaceWithPause(t *testing.T) {
	a := shmtest.NewArena(t, 0)
	bs, err := Region(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []Want{WantPause, WantRun} {
		b := &bs[1]
		b.Reset(0)
		if w == WantRun {
			b.SetWant(WantPause)
		}
		fired := false
		testHookSetWant = func() {
			if fired {
				return
			}
			fired = true
			b.SetWant(WantDrain) // the racing Stop, after our check
		}
		b.SetWant(w)
		testHookSetWant = nil
		if !fired {
			t.Fatal("hook never ran")
		}
		if got := b.Want(); got != WantDrain {
			t.Errorf("SetWant(%v) racing a drain left want %v; want drain (final)", w, got)
		}
	}
}
