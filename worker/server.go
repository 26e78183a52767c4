package worker

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/proc"
)

// Defaults of ServerConfig: what a production HTTP server is expected to do
// without being told (nginx's keepalive_timeout is 75 s, its
// client_header_timeout and client_body_timeout 60 s).
const (
	DefaultIdleTimeout       = 75 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyReadTimeout   = 60 * time.Second
	DefaultMaxHeaderBytes    = http.DefaultMaxHeaderBytes // 1 MiB
	DefaultErrorLogInterval  = time.Second
	DefaultDrainIdleGrace    = time.Second
)

// ServerConfig holds the limits a worker's http.Server gets against idle,
// slow and oversized clients, how a draining worker lets its keep-alive
// connections go, and whether its accepts are balanced with the other
// workers'. Zero fields take their defaults; a negative duration (or
// MaxHeaderBytes) turns that limit off. A field the server from
// Config.NewServer already sets is left as it is.
type ServerConfig struct {
	// IdleTimeout closes a keep-alive connection idle for that long
	// (http.Server.IdleTimeout). Default 75 s.
	IdleTimeout time.Duration

	// ReadHeaderTimeout bounds reading a request's header, from its first
	// byte, or from the accept for the first request
	// (http.Server.ReadHeaderTimeout). Default 10 s.
	ReadHeaderTimeout time.Duration

	// BodyReadTimeout bounds reading a request's body, from the moment its
	// handler starts: a read past it fails with a timeout (the client that
	// sends one byte every 5 s is cut). Not applied when the server from
	// NewServer sets ReadTimeout (which bounds header and body together).
	// Default 60 s.
	BodyReadTimeout time.Duration

	// MaxHeaderBytes caps a request's header (http.Server.MaxHeaderBytes;
	// a larger one is answered 431). Default 1 MiB.
	MaxHeaderBytes int

	// ErrorLogInterval rate-limits the server's error log
	// (http.Server.ErrorLog: accept errors such as EMFILE, TLS handshake
	// errors): at most one line per interval, the next saying how many were
	// suppressed. Default 1 s.
	ErrorLogInterval time.Duration

	// RequestTimeout is each request's deadline, from its handler's start:
	// past it the handler's context is cancelled, the request counts as
	// hung (the master replaces a worker with master.Config.HungRequests
	// of them within HungWindow), and a handler that has written nothing
	// yet has its client answered 503 with "Connection: close"; see
	// RequestDeadline. Default 0: no deadline (as a negative value): a
	// server whose handlers stream or long-poll should keep it off, or
	// above their longest request.
	RequestTimeout time.Duration

	// DrainIdleGrace is how long a draining or paused worker leaves a
	// keep-alive connection idle before closing it. Until then the
	// client's next request on it is served and answered with "Connection:
	// close" (so the client closes it, and no request it already sent is
	// reset by a close under it). Default 1 s.
	DrainIdleGrace time.Duration

	// UnbalancedAccepts turns the accept balance off: a worker then
	// accepts whenever the kernel wakes it, and under light load the
	// busiest worker takes more than its share of the new connections
	// (up to 1.26× its fair share with 2 workers and 1.37× with 4 in the
	// figure of docs/runtime.md, "Balanced accepts"). With the balance (the default),
	// a worker that accepted more than its share of the connections of the
	// last 100 ms waits up to 2 ms before its next accept, so that another
	// worker takes it; it waits no longer once the others take nothing while
	// clients wait in the socket's queue.
	UnbalancedAccepts bool
}

// WithDefaults returns c with the defaults of its zero fields filled in.
func (c ServerConfig) WithDefaults() ServerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.BodyReadTimeout, DefaultBodyReadTimeout)
	def(&c.ErrorLogInterval, DefaultErrorLogInterval)
	def(&c.DrainIdleGrace, DefaultDrainIdleGrace)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return c
}

// Apply sets the limits of c (defaults filled in) on the fields of s that
// are zero: IdleTimeout, ReadHeaderTimeout, MaxHeaderBytes and ErrorLog (a
// rate-limited log on logger). The body read deadline and the request
// deadline are not server fields: BodyDeadline and RequestDeadline apply
// them per request.
func (c ServerConfig) Apply(s *http.Server, logger *slog.Logger) {
	c = c.WithDefaults()
	if s.IdleTimeout == 0 && c.IdleTimeout > 0 {
		s.IdleTimeout = c.IdleTimeout
	}
	if s.ReadHeaderTimeout == 0 && c.ReadHeaderTimeout > 0 {
		s.ReadHeaderTimeout = c.ReadHeaderTimeout
	}
	if s.MaxHeaderBytes == 0 && c.MaxHeaderBytes > 0 {
		s.MaxHeaderBytes = c.MaxHeaderBytes
	}
	if s.ErrorLog == nil && logger != nil {
		s.ErrorLog = NewErrorLog(logger, c.ErrorLogInterval)
	}
}

// BodyDeadline returns next with the body read deadline of c: a request with
// a body gets a read deadline BodyReadTimeout after its handler starts,
// cleared once the body is read to its end (so that net/http's background
// read, which follows the body, never times out under a long handler).
// Servers with a ReadTimeout of their own should not use it.
func (c ServerConfig) BodyDeadline(next http.Handler) http.Handler {
	d := c.WithDefaults().BodyReadTimeout
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline once the body is read
// to its end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// NewErrorLog returns a *log.Logger for http.Server.ErrorLog that writes to
// logger at WARN, at most one line per interval (default 1 s when not
// positive): a flood of accept errors (EMFILE under a connection flood) is
// one line a second saying how many it stands for, not thousands. It is
// safe for concurrent use.
func NewErrorLog(logger *slog.Logger, interval time.Duration) *log.Logger {
	if interval <= 0 {
		interval = DefaultErrorLogInterval
	}
	return log.New(&limitedWriter{log: logger, every: interval}, "", 0)
}

type limitedWriter struct {
	log   *slog.Logger
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		l.mu.Unlock()
		return len(p), nil
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	msg := string(bytes.TrimRight(p, "\n"))
	if n > 0 {
		l.log.Warn("http server: "+msg, "suppressed", n, "interval", l.every)
	} else {
		l.log.Warn("http server: " + msg)
	}
	return len(p), nil
}

// idleConns tracks the connections that wait for a request (idle keep-alive
// connections, and accepted ones with no request yet) and since when, so
// that a drain closes only those idle for a grace.
//
// Idle means the client sent nothing: net/http reports StateActive only once
// a request's whole header is read, so a connection whose client has begun a
// request (bytes in the socket's receive queue that the server's goroutine
// has not read yet, which under load lasts milliseconds, or part of a header
// already read) is still StateIdle. Closing it resets the request; the client
// sees ECONNRESET or EPIPE and does not replay a PUT. So closeIdle also skips
// a connection that read data since it went idle (trackedConn counts its
// reads) or has bytes waiting in the kernel (SIOCINQ): it is served, with
// "Connection: close", or cut by ReadHeaderTimeout. What remains is HTTP/1.1's
// own race: a client that sends in the microseconds between that check and
// the close, or after the close but before its transport saw the FIN.
type idleConns struct {
	mu    sync.Mutex
	since map[net.Conn]idleSince
}

// idleSince is when a connection went idle and how many reads with data its
// trackedConn had counted by then.
type idleSince struct {
	at    time.Time
	reads uint64
}

// track follows one ConnState change.
func (ic *idleConns) track(c net.Conn, s http.ConnState) {
	ic.mu.Lock()
	switch s {
	case http.StateNew, http.StateIdle:
		if ic.since == nil {
			ic.since = map[net.Conn]idleSince{}
		}
		var reads uint64
		if tc := tracked(c); tc != nil {
			reads = tc.reads.Load()
		}
		ic.since[c] = idleSince{at: time.Now(), reads: reads}
	default:
		delete(ic.since, c)
	}
	ic.mu.Unlock()
}

// closeIdle closes the connections idle for at least grace on which the
// client has sent nothing since, and returns how many it closed. The lock is
// held across the close: a connection that just became active is not in the
// map any more.
func (ic *idleConns) closeIdle(grace time.Duration) int {
	cut := time.Now().Add(-grace)
	n := 0
	ic.mu.Lock()
	for c, s := range ic.since {
		if s.at.After(cut) || clientSent(c, s.reads) {
			continue
		}
		c.Close()
		delete(ic.since, c)
		n++
	}
	ic.mu.Unlock()
	return n
}

// clientSent reports whether the client of c has sent data since c went idle
// with reads counted: read by the server, or waiting in the receive queue.
func clientSent(c net.Conn, reads uint64) bool {
	tc := tracked(c)
	if tc == nil {
		return false
	}
	if tc.reads.Load() != reads {
		return true
	}
	sc, ok := tc.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	queued := 0
	raw.Control(func(fd uintptr) { queued = inQueue(fd) })
	return queued > 0
}

// trackedListener wraps the worker's listener so that each connection counts
// its reads (see idleConns), and counts the accepts in the worker's control
// block (counts; nil: not counted).
type trackedListener struct {
	net.Listener
	counts *proc.Block
	bal    *balancer // nil: accept in the kernel's order
}

func (l trackedListener) Accept() (net.Conn, error) {
	if l.bal != nil {
		l.bal.wait()
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.counts != nil {
		l.counts.CountAccept()
	}
	return &trackedConn{Conn: c}, nil
}

// trackedConn is an accepted connection that counts the reads that returned
// data.
type trackedConn struct {
	net.Conn
	reads atomic.Uint64
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// ReadFrom keeps the TCP connection's sendfile/splice path for responses
// (net/http uses the connection's io.ReaderFrom).
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// tracked returns the trackedConn under c (c itself, or under TLS), or nil.
func tracked(c net.Conn) *trackedConn {
	if tc, ok := c.(*trackedConn); ok {
		return tc
	}
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		tc, _ := nc.NetConn().(*trackedConn)
		return tc
	}
	return nil
}

// String describes c (defaults filled in) on one line, for logs.
func (c ServerConfig) String() string {
	c = c.WithDefaults()
	return fmt.Sprintf("{idle=%v header=%v body=%v maxHeader=%d errorLog=%v request=%v drainIdle=%v balancedAccepts=%v}",
		c.IdleTimeout, c.ReadHeaderTimeout, c.BodyReadTimeout, c.MaxHeaderBytes, c.ErrorLogInterval, c.RequestTimeout, c.DrainIdleGrace, !c.UnbalancedAccepts)
}
