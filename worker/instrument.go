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
			w.c.totals.CountRequests(1)
			w.c.durations.Add(int64(time.Since(t)))
			if p := recover(); p != nil {
				w.c.errors.Add(1)
				panic(p) // net/http logs it and closes the connection
			}
		}()
		next.ServeHTTP(rw, r)
	})
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
