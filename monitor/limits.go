package monitor

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the monitor's connection limits (Options).
const (
	DefaultMaxConns          = 128
	DefaultIdleTimeout       = 75 * time.Second // nginx's keepalive_timeout
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// limitListener caps the connections open at once: a connection accepted
// beyond the cap is closed at once (it costs a descriptor for that moment
// only), so that a flood of connections to the monitor never holds more
// than max of the master's descriptors. Refusals are counted and logged at
// most once per logEvery.
type limitListener struct {
	net.Listener
	sem      chan struct{}
	log      *slog.Logger
	refused  atomic.Uint64
	lastLog  atomic.Int64 // unix nanoseconds of the last refusal logged
	logEvery time.Duration
}

func newLimitListener(ln net.Listener, max int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, max), log: log, logEvery: 10 * time.Second}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
		}
		c.Close()
		n := l.refused.Add(1)
		now := time.Now().UnixNano()
		if last := l.lastLog.Load(); now-last >= int64(l.logEvery) && l.lastLog.CompareAndSwap(last, now) {
			l.log.Warn("monitor: connection refused: too many open connections (Options.MaxConns)",
				"max", cap(l.sem), "refusedTotal", n)
		}
	}
}

// limitConn gives its slot back when closed (once).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
