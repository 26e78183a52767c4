package worker_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/worker"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

// TestErrorLogIsRateLimited: a flood of server errors (accept errors under
// EMFILE come every 5 ms to 1 s) is one line per interval, the next one
// counting what was suppressed.
func TestErrorLogIsRateLimited(t *testing.T) {
	var out syncBuffer
	l := worker.NewErrorLog(slog.New(slog.NewTextHandler(&out, nil)), 200*time.Millisecond)
	for range 1000 {
		l.Printf("http: Accept error: accept tcp: too many open files; retrying in 5ms")
	}
	if got := out.lines(); len(got) != 1 || !strings.Contains(got[0], "too many open files") {
		t.Fatalf("after 1000 errors at once: %d lines %q; want 1", len(got), got)
	}
	time.Sleep(250 * time.Millisecond)
	l.Printf("http: Accept error: again")
	got := out.lines()
	if len(got) != 2 || !strings.Contains(got[1], "suppressed=999") || !strings.Contains(got[1], "again") {
		t.Fatalf("after the interval: %q; want a second line with suppressed=999", got)
	}
}

// TestServerConfigApply fills only the fields a server left zero, and a
// negative limit stays off.
func TestServerConfigApply(t *testing.T) {
	s := &http.Server{IdleTimeout: 5 * time.Second}
	worker.ServerConfig{ReadHeaderTimeout: -1}.Apply(s, slog.Default())
	if s.IdleTimeout != 5*time.Second {
		t.Errorf("IdleTimeout %v; want the server's own 5s kept", s.IdleTimeout)
	}
	if s.ReadHeaderTimeout != 0 {
		t.Errorf("ReadHeaderTimeout %v; want 0 (turned off by a negative value)", s.ReadHeaderTimeout)
	}
	if s.MaxHeaderBytes != worker.DefaultMaxHeaderBytes || s.ErrorLog == nil {
		t.Errorf("MaxHeaderBytes %d, ErrorLog %v; want the defaults", s.MaxHeaderBytes, s.ErrorLog)
	}
	d := &http.Server{}
	worker.ServerConfig{}.Apply(d, slog.Default())
	if d.IdleTimeout != worker.DefaultIdleTimeout || d.ReadHeaderTimeout != worker.DefaultReadHeaderTimeout {
		t.Errorf("defaults: IdleTimeout %v, ReadHeaderTimeout %v", d.IdleTimeout, d.ReadHeaderTimeout)
	}
}
