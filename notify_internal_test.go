package cluster2

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/master"
)

// TestNotifierUnset: without NOTIFY_SOCKET the master has no notifier, and
// the nil notifier ignores every event.
func TestNotifierUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier(slog.Default(), 2, false)
	if n != nil {
		t.Fatalf("newNotifier without NOTIFY_SOCKET = %+v; want nil", n)
	}
	n.event(Event{Kind: master.EventUp, Time: time.Now()})
}

// TestNotifierSendFails: a NOTIFY_SOCKET nobody listens on makes every send
// fail; the failure is logged once (a warning), and nothing panics or stops.
func TestNotifierSendFails(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	var buf bytes.Buffer
	n := newNotifier(slog.New(slog.NewTextHandler(&buf, nil)), 2, false)
	if n == nil {
		t.Fatal("newNotifier with NOTIFY_SOCKET = nil")
	}
	for _, k := range []master.Kind{master.EventUp, master.EventRollingRestart, master.EventRollingRestartDone, master.EventDown} {
		n.event(Event{Kind: k, Err: errors.New("a\nb"), Time: time.Now()})
	}
	if got := strings.Count(buf.String(), "sd_notify failed"); got != 1 {
		t.Fatalf("logged %d failures; want 1:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("the failure is not a warning:\n%s", buf.String())
	}
}
