package master

import (
	"testing"
	"time"
)

// TestHeartbeatingWorkerIsNotUnresponsive: a worker told to drain that does
// not acknowledge it (a worker still in warm-up reads its wants only once
// listening) but keeps heartbeating is alive, not unresponsive: the
// heartbeats taken during the grace count (they do not close changed, so
// they must be read when the grace ends).
func TestHeartbeatingWorkerIsNotUnresponsive(t *testing.T) {
	m := &Master{cfg: Config{HeartbeatInterval: 100 * time.Millisecond, ReplaceTimeout: time.Minute},
		killCh: make(chan struct{})}
	h := &handle{changed: make(chan struct{}), exited: make(chan struct{}), lastHB: time.Now().Add(-time.Hour)}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // onHeartbeat's bookkeeping, every 100 ms
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				m.mu.Lock()
				h.lastHB = time.Now()
				m.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	if m.unresponsive(h) {
		t.Fatalf("a worker heartbeating every 100 ms was judged unresponsive after the %v grace", m.unresponsiveGrace())
	}
	// And one that stopped heartbeating an hour ago is.
	h2 := &handle{changed: make(chan struct{}), exited: make(chan struct{}), lastHB: time.Now().Add(-time.Hour)}
	if !m.unresponsive(h2) {
		t.Fatalf("a worker silent for an hour was not judged unresponsive")
	}
}

// TestStaleHeartbeatReadLateIsUnresponsive: a worker stopped (SIGSTOP) just
// after writing a heartbeat that a loaded master reads only after the grace
// began is unresponsive: what counts is when the heartbeat was taken, not
// when it was read. (Judged by the read time, such a worker looked alive
// and a stop waited StopTimeout for it.)
func TestStaleHeartbeatReadLateIsUnresponsive(t *testing.T) {
	m := &Master{cfg: Config{HeartbeatInterval: 100 * time.Millisecond, ReplaceTimeout: time.Minute},
		killCh: make(chan struct{})}
	taken := time.Now().Add(-time.Hour)
	h := &handle{changed: make(chan struct{}), exited: make(chan struct{}), lastHB: taken}
	h.hb.At = taken.UnixNano()
	go func() { // the late read of the old heartbeat, during the grace
		time.Sleep(200 * time.Millisecond)
		m.mu.Lock()
		h.lastHB = time.Now()
		m.mu.Unlock()
	}()
	if !m.unresponsive(h) {
		t.Fatal("a worker whose last heartbeat was taken an hour ago (read during the grace) was judged alive")
	}
}
