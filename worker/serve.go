package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Any server: Config.Serve and Config.Drain run a server other than
// net/http's (gRPC, fasthttp, a custom protocol) as the worker's.
//
// Two hooks, not an interface: the servers users bring have neither the
// signature of Serve nor that of Drain (grpc.Server has Serve(net.Listener)
// and GracefulStop(); fasthttp.Server has Serve(net.Listener) and
// ShutdownWithContext(ctx)), so an interface would need an adapter type for
// each; two function fields take a closure each, like the Config's other
// hooks (NewServer, ConfigureApp, WarmUp, Attach).
//
// What the worker does with them (the net/http path's equivalents in
// brackets):
//
//   - warm-up: Serve runs on the private loopback listener while WarmUp
//     runs; the listener is closed when WarmUp returned, the connections
//     accepted on it are closed, and Serve must return [a second
//     http.Server, closed];
//   - listening: Serve runs on the worker's listener of the shared socket;
//     a pause closes that listener (Serve returns; the connections it
//     accepted stay with the server), a resume calls Serve again on a new
//     one [http.Server.Serve, again after a resume];
//   - drain: the listener is closed, Serve has returned, then Drain runs
//     with the drain's deadline; once it returned the worker waits, up to
//     the deadline, for the connections accepted from its listeners to be
//     closed, and closes what is left [the two phases, Shutdown, Close];
//   - heartbeats: the connections are counted by the listeners the worker
//     hands to Serve (open, total); requests, their duration and errors
//     only when the server calls CountRequest [instrument, ConnState]; so
//     is MaxRequests (the same count), and HungRequests judges the requests
//     past a deadline the server reports with RequestHung [RequestDeadline];
//   - a Serve that returns while its listener is open (an error, a stopped
//     server) stops the worker with ErrServe: drained and gone, the master
//     starts another [logged].

// running is the process's worker once it warmed up (Config.Serve):
// CountRequest and RequestHung count into it.
var running atomic.Pointer[Worker]

// CountRequest counts one request a server run through Config.Serve
// completed, taking d, as the worker's net/http server counts each of its
// own: the heartbeat's Requests, RequestsDuration and RPS, and so the
// monitor's cluster2_worker_requests_total and requests per second, and the
// dashboard's. failed also counts an error (Heartbeat.Errors,
// cluster2_worker_errors_total): what a server calls a failure (a panic, an
// internal error) is its to say. It does nothing outside a worker, before
// the worker warmed up (the warm-up's requests are not counted, as with
// Handler), or in a worker serving net/http (Config.Handler: its requests are
// counted already). Safe for concurrent use; a few atomic adds.
func CountRequest(d time.Duration, failed bool) {
	w := running.Load()
	if w == nil || w.cfg.Serve == nil {
		return
	}
	w.requestDone(d) // the count MaxRequests judges too
	if failed {
		w.c.errors.Add(1)
	}
}

// RequestHung counts one request of a server run through Config.Serve
// that passed a deadline of the server's own with its handler still
// running, as the worker's net/http server counts each request past
// ServerConfig.RequestTimeout: in the worker's control block, where the
// master replaces a worker with master.Config.HungRequests of them within
// HungWindow (WorkerInfo.HungRequests, cluster2_worker_hung_requests_total).
// It does nothing outside a worker, before the worker warmed up, or in a
// worker serving net/http (its server counts them). Safe for concurrent use.
func RequestHung() {
	if w := running.Load(); w != nil && w.cfg.Serve != nil {
		w.requestHung()
	}
}

// Validate reports what makes Run refuse c, as an error wrapping
// ErrInvalidConfig that names the field: c must name one server, Handler
// (net/http, with NewServer and ConfigureApp if wanted) or Serve with Drain.
// Durations out of range take their defaults.
func (c Config) Validate() error {
	bad := func(why string) error { return fmt.Errorf("worker: %w: %s", ErrInvalidConfig, why) }
	switch {
	case c.Handler == nil && c.Serve == nil:
		return bad("neither Handler nor Serve is set")
	case c.Handler != nil && c.Serve != nil:
		return bad("Handler and Serve are both set (one server: net/http's Handler, or Serve)")
	case c.Serve != nil && c.Drain == nil:
		return bad("Serve is set without Drain")
	case c.Serve == nil && c.Drain != nil:
		return bad("Drain is set without Serve")
	case c.Serve != nil && c.NewServer != nil:
		return bad("NewServer is set with Serve (it makes the net/http server)")
	case c.Serve != nil && c.ConfigureApp != nil:
		return bad("ConfigureApp is set with Serve (it wraps the Handler)")
	}
	return nil
}

// serveListener is a listener the worker hands to Config.Serve: it tracks
// the connections it accepted (counted in the heartbeat when count is set,
// closed by closeConns), and tells a close by the worker (shut) from one by
// the server.
type serveListener struct {
	net.Listener
	w     *Worker
	count bool // the shared socket's: open and total connections in the heartbeat

	ctx    context.Context // Serve's: cancelled by shut
	cancel context.CancelFunc

	shutByWorker atomic.Bool
	closeOnce    sync.Once
	mu           sync.Mutex
	conns        map[*serveConn]struct{}
}

func (w *Worker) newServeListener(ln net.Listener, count bool) *serveListener {
	l := &serveListener{Listener: ln, w: w, count: count, conns: map[*serveConn]struct{}{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// Accept returns the next connection, tracked.
func (l *serveListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &serveConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[sc] = struct{}{}
	l.mu.Unlock()
	if l.count { // the accept itself is counted by the trackedListener under l
		l.w.c.openConns.Add(1)
	}
	return sc, nil
}

// Close closes the listener once; a second Close returns nil (servers close
// their listener when Serve returns, fasthttp's Shutdown closes every
// listener it was given).
func (l *serveListener) Close() error {
	err := error(nil)
	l.closeOnce.Do(func() { err = l.Listener.Close() })
	return err
}

// shut is the worker's close: Serve's context is cancelled and Serve must
// return.
func (l *serveListener) shut() {
	l.shutByWorker.Store(true)
	l.Close()
	l.cancel()
}

// open returns how many of the listener's connections are not closed yet.
func (l *serveListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// closeConns closes the connections the server has not closed and returns
// how many.
func (l *serveListener) closeConns() int {
	l.mu.Lock()
	cs := make([]*serveConn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	return len(cs)
}

// serveConn is a connection a serveListener accepted: its first Close
// forgets it.
type serveConn struct {
	net.Conn
	l    *serveListener
	once sync.Once
}

func (c *serveConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if c.l.count {
			c.l.w.c.openConns.Add(-1)
		}
	})
	return err
}

// serve runs Config.Serve on l until it returns; it reports whether the
// worker had shut l by then, and Serve's error.
func (w *Worker) serve(l *serveListener) (shut bool, err error) {
	err = w.cfg.Serve(l.ctx, l)
	return l.shutByWorker.Load(), err
}

// serveShared runs Config.Serve on the worker's listener of the shared
// socket (in listen's goroutine). A Serve that returns while the worker did
// not close its listener stops the worker: it would stay listening for the
// master and serve nothing.
func (w *Worker) serveShared(l *serveListener) {
	shut, err := w.serve(l)
	if shut {
		return
	}
	if err == nil {
		err = errors.New("Serve returned nil")
	}
	err = fmt.Errorf("%w: %w", ErrServe, err)
	w.log.Error("Serve returned while listening: draining", "err", err)
	w.block.SetReason(err.Error())
	w.stop(stopReq{deadline: w.cfg.StopTimeout, err: err})
}

// servePrivate runs Config.Serve on the private warm-up listener and returns
// the function that ends it (the listener and its connections closed, then
// Serve waited for, up to bound) and a channel that receives Serve's error
// if it returns before that.
func (w *Worker) servePrivate(ln net.Listener) (end func(bound time.Duration) error, early <-chan error) {
	l := w.newServeListener(ln, false)
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if shut, err := w.serve(l); !shut {
			if err == nil {
				err = errors.New("Serve returned nil")
			}
			errc <- fmt.Errorf("%w during warm-up: %w", ErrServe, err)
		}
	}()
	return func(bound time.Duration) error {
		l.shut()
		l.closeConns()
		select {
		case <-done:
			return nil
		case <-time.After(bound):
			return fmt.Errorf("%w: Serve did not return within %v of its warm-up listener's close", ErrServe, bound)
		}
	}, errc
}

// drainServe is the drain of a server run through Config.Serve, once its
// listener is closed and Serve returned: Drain with the deadline, then the
// connections of the shared listeners are waited for until the deadline and
// the rest closed.
func (w *Worker) drainServe(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- w.cfg.Drain(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			w.log.Warn("Drain", "err", err)
		}
	case <-ctx.Done():
		w.log.Warn("Drain did not return within the drain's deadline: closing connections")
	}
	for w.c.openConns.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	w.mu.Lock()
	ls := w.served
	w.served = nil
	w.mu.Unlock()
	n := 0
	for _, l := range ls {
		n += l.closeConns()
	}
	if n > 0 {
		w.log.Warn("drain deadline passed: closed connections", "open", n)
	}
}
