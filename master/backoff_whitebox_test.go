package master

import (
	"log/slog"
	"slices"
	"testing"
	"time"
)

func TestCrashBackoffGrowsByRateAndIsCapped(t *testing.T) {
	var c crashBackoff
	var got []time.Duration
	for range 9 {
		got = append(got, c.next(time.Now(), time.Second))
	}
	want := []time.Duration{0, 100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond,
		337500 * time.Microsecond, 506250 * time.Microsecond, 759375 * time.Microsecond, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v; want %v", got, want)
		}
	}
	// A crash long after the last one is a lone crash: replaced at once.
	c.last = time.Now().Add(-time.Hour)
	if d := c.next(time.Now(), time.Second); d != 0 {
		t.Fatalf("delay after a quiet hour = %v; want 0", d)
	}
}

// DeathQueue lists the worker being replaced first, then the queue in order;
// enqueue ignores a pid already queued.
func TestDeathQueueOrder(t *testing.T) {
	m := &Master{queued: map[int]bool{}, qWake: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler)}
	if q := m.DeathQueue(); len(q) != 0 {
		t.Fatalf("DeathQueue of an idle master = %v", q)
	}
	m.current = 7
	for _, pid := range []int{11, 12, 11, 13} {
		m.enqueue(pid, ReasonRequested, "test", nil)
	}
	if q := m.DeathQueue(); !slices.Equal(q, []int{7, 11, 12, 13}) {
		t.Fatalf("DeathQueue = %v; want [7 11 12 13]", q)
	}
}
