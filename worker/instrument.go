package worker

import (
	"net/http"
	"time"
)

// instrument counts completed requests, their duration and handler panics.
func (w *Worker) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		t := time.Now()
		defer func() {
			w.requestDone(time.Since(t))
			if p := recover(); p != nil {
				w.c.errors.Add(1)
				panic(p) // net/http logs it and closes the connection
			}
		}()
		next.ServeHTTP(rw, r)
	})
}

// requestDone counts one request served on the shared socket, which took d,
// as it completes (the net/http server's instrument, CountRequest): in the
// worker's control block, where heartbeats (their Requests,
// RequestsDuration, RPS), the monitor's /metrics and the master's
// MaxRequests read it; the request that reaches the worker's limit wakes
// the master.
func (w *Worker) requestDone(d time.Duration) {
	n := w.c.totals.CountRequests(1)
	w.c.durations.Add(int64(d))
	if n == w.limit {
		w.block.WakeMaster() // the master's watcher compares the count with the limit
	}
}

// requestHung counts one request past its deadline (the net/http server's
// RequestDeadline, RequestHung), in the worker's control block, and wakes
// the master, which replaces a worker with master.Config.HungRequests of
// them within HungWindow; the first of a burst is logged (at most one line
// a second).
func (w *Worker) requestHung() {
	n := w.block.AddHung()
	w.hungLog.Printf("a request passed its deadline (RequestTimeout %v): %d so far", w.cfg.Server.RequestTimeout, n)
}

// heartbeats publishes a heartbeat every interval until the worker stops.
func (w *Worker) heartbeats() {
	w.sendHeartbeat(w.col)
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.sendHeartbeat(w.col)
		case <-w.done:
			return
		}
	}
}

func (w *Worker) sendHeartbeat(col *collector) {
	if col == nil {
		return
	}
	w.hbMu.Lock()
	defer w.hbMu.Unlock()
	h := col.take(time.Now())
	words := h.Words()
	w.block.StoreHeartbeat(&words)
}
