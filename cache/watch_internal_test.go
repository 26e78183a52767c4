package cache

import "testing"

// TestWatchQueueIsBoundedInBytes: a watcher whose callback is stuck holds
// at most watchQueueBytes of values (plus the first change, whatever its
// size); further changes are dropped, counted and told (OpLost), as for a
// queue full by count.
func TestWatchQueueIsBoundedInBytes(t *testing.T) {
	_, c := testCache(t, SpaceOptions{Bytes: 8 << 20}, "w")
	// A watcher nobody runs: push is what the journal tailer calls.
	w := &Watcher{c: c, wake: make(chan struct{}, 1), gone: make(chan struct{})}
	big := make([]byte, watchQueueBytes/4+1)
	w.push(Change{Key: "first", Op: OpSet, Value: make([]byte, 2*watchQueueBytes)}, false)
	w.push(Change{Key: "second", Op: OpSet, Value: big}, false)
	if len(w.q) != 1 || w.Lost() != 1 {
		t.Fatalf("after a first change past the bound: %d queued, %d lost; want the first queued, the next lost", len(w.q), w.Lost())
	}
	ch, _ := w.next(nil)
	if ch.Key != "first" || w.qbytes != 0 {
		t.Fatalf("next = %q, %d bytes left; want the first change and none", ch.Key, w.qbytes)
	}
	for i := range 5 {
		w.push(Change{Key: string(rune('a' + i)), Op: OpSet, Value: big}, false)
	}
	// Three of a quarter and a byte fit (the fourth would pass the bound;
	// the queue was not empty): the lost one told first, then three, then
	// two lost.
	if len(w.q) != 4 || w.q[0].Op != OpLost || w.Lost() != 3 || w.qbytes != 3*len(big) {
		t.Fatalf("%d queued (first %v), %d lost, %d bytes; want OpLost + 3 queued, 3 lost in all", len(w.q), w.q[0].Op, w.Lost(), w.qbytes)
	}
	// Small changes still fit by count once the big ones are read.
	for range 4 {
		w.next(nil)
	}
	w.push(Change{Key: "small", Op: OpSet, Value: []byte("x")}, false)
	if len(w.q) != 2 || w.q[0].Op != OpLost || w.q[0].Lost != 2 || w.q[1].Key != "small" {
		t.Fatalf("after reading them: %+v; want OpLost(2) then the small change", w.q)
	}
}
