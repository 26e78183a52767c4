package cluster2

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// TestNotifierCheckFailure: a rolling restart refused by the check says so
// to the service manager (READY=1 again, nothing replaced), not "done with
// failures".
func TestNotifierCheckFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := newNotifier(slog.Default(), 2, false)
	err = fmt.Errorf("master: rolling restart refused, every worker kept: %w: /bin/app: the file is missing", ErrCheckFailed)
	n.event(Event{Kind: master.EventRollingRestartDone, Err: err, Time: time.Now()})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	k, err := c.Read(buf)
	if got := string(buf[:k]); err != nil || !strings.Contains(got, "READY=1") ||
		!strings.Contains(got, "STATUS=rolling restart refused, nothing replaced: ") || !strings.Contains(got, "the file is missing") {
		t.Fatalf("notification %q, %v; want READY=1 and the refusal", got, err)
	}
}
