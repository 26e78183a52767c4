package worker

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// timeoutBody is what a request past its RequestTimeout is answered with,
// when its handler had written nothing yet.
const timeoutBody = "request timed out\n"

// RequestDeadline returns next with the per-request deadline of c
// (RequestTimeout; next itself when it is off). Each request's context is
// cancelled RequestTimeout after its handler starts; then onHung (when not
// nil) is called once for it, whether the handler returns later or never
// (a loop that never ends counts as hung); and if the handler has written
// nothing yet (no header, no byte, no flush), the client is answered at once
// with 503 Service Unavailable, "Connection: close" (HTTP/1) and the text
// "request timed out": the connection is not reused, since its serving
// goroutine may stay stuck in the handler. The handler's writes after that
// fail with http.ErrHandlerTimeout. A handler that has begun its response
// keeps it (the deadline only cancels its context): the response is not
// buffered, so streaming, Flush and large bodies work as without the
// deadline. A hijacked connection (a WebSocket) leaves the deadline at the
// hijack. Under HTTP/2 the 503 is written at once too, and the stream ends
// when the handler returns.
//
// Use it for another net/http server of the worker's process; the worker's
// own server has it, with onHung counting the request for the master (as
// RequestHung does for a server run through Config.Serve).
func (c ServerConfig) RequestDeadline(next http.Handler, onHung func()) http.Handler {
	d := c.WithDefaults().RequestTimeout
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		tw := &timeoutWriter{rw: rw, h: make(http.Header), major: r.ProtoMajor}
		t := time.AfterFunc(d, func() {
			if tw.timeOut(onHung) {
				cancel()
			}
		})
		defer func() {
			t.Stop()
			tw.finish()
		}()
		next.ServeHTTP(tw, r.WithContext(ctx))
	})
}

// timeoutWriter is the ResponseWriter of a request under RequestDeadline.
// Every use of the real writer goes through it, under mu, so that the
// deadline's 503 (written from the timer's goroutine) never races the
// handler's writes. The handler's header is its own map, copied to the
// real one when the response begins: the timer's goroutine never touches a
// map the handler may be writing.
type timeoutWriter struct {
	rw    http.ResponseWriter
	h     http.Header
	major int

	mu       sync.Mutex
	began    bool // the handler's response began (header written): the deadline writes nothing
	timedOut bool // the deadline passed while the handler ran
	over     bool // the handler returned, or hijacked the connection: the deadline is off
}

// timeOut is the deadline: it reports whether it passed with the handler
// still running, and then counts it (onHung, before the client can see the
// answer) and answers 503 if nothing was written.
func (tw *timeoutWriter) timeOut(onHung func()) bool {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.over {
		return false
	}
	tw.timedOut = true
	if onHung != nil {
		onHung()
	}
	if tw.began {
		return true
	}
	h := tw.rw.Header()
	clear(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(timeoutBody)))
	if tw.major == 1 {
		h.Set("Connection", "close")
	}
	tw.rw.WriteHeader(http.StatusServiceUnavailable)
	tw.rw.Write([]byte(timeoutBody))
	http.NewResponseController(tw.rw).Flush()
	return true
}

// finish runs when the handler returned: trailers it set are copied (net/http
// reads them after the handler), and the deadline is off.
func (tw *timeoutWriter) finish() {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if !tw.timedOut && tw.began {
		tw.copyHeader()
	}
	tw.over = true
}

func (tw *timeoutWriter) copyHeader() {
	dst := tw.rw.Header()
	for k, v := range tw.h {
		dst[k] = v
	}
}

// begin starts the handler's response; called with mu held.
func (tw *timeoutWriter) begin() {
	if !tw.began {
		tw.began = true
		tw.copyHeader()
	}
}

// Header returns the handler's header.
func (tw *timeoutWriter) Header() http.Header { return tw.h }

// WriteHeader writes the handler's header, unless the deadline answered.
func (tw *timeoutWriter) WriteHeader(code int) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut && !tw.began {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		tw.copyHeader() // an informational response: the handler's header so far, the response not begun
		tw.rw.WriteHeader(code)
		return
	}
	tw.begin()
	tw.rw.WriteHeader(code)
}

// Write writes the handler's body, unless the deadline answered.
func (tw *timeoutWriter) Write(p []byte) (int, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut && !tw.began {
		return 0, http.ErrHandlerTimeout
	}
	tw.begin()
	return tw.rw.Write(p)
}

// FlushError flushes the handler's response (http.ResponseController's
// Flush), unless the deadline answered.
func (tw *timeoutWriter) FlushError() error {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut && !tw.began {
		return http.ErrHandlerTimeout
	}
	tw.begin()
	return http.NewResponseController(tw.rw).Flush()
}

// Flush is FlushError for http.Flusher.
func (tw *timeoutWriter) Flush() { tw.FlushError() }

// Hijack takes the connection over (http.Hijacker): the deadline no longer
// applies to it. After the deadline answered it fails.
func (tw *timeoutWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut {
		return nil, nil, http.ErrHandlerTimeout
	}
	c, rw, err := http.NewResponseController(tw.rw).Hijack()
	if err == nil {
		tw.over = true
	}
	return c, rw, err
}

// Unwrap returns the real writer, for http.ResponseController's other
// methods (read and write deadlines, full duplex).
func (tw *timeoutWriter) Unwrap() http.ResponseWriter { return tw.rw }
