package cluster2

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cluster2/cluster2/master"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier tells the service manager about the master's lifecycle through
// systemd's notify protocol (go-systemd's daemon.SdNotify, a datagram to
// $NOTIFY_SOCKET): READY=1 with MAINPID=<master pid> at EventUp, RELOADING=1
// at EventRollingRestart and READY=1 again at EventRollingRestartDone (with
// a STATUS= line saying how it went), a STATUS= line with the new target at
// EventScale, STOPPING=1 at EventDown. Nothing is
// sent after STOPPING=1, so a rolling restart cut short by a stop does not
// say READY again. Only the master has one, and only when NOTIFY_SOCKET is
// set (newNotifier returns nil otherwise; a nil notifier ignores every
// event). A send that fails is logged once, never fatal: the cluster serves
// whether or not its manager hears it. See docs/runtime.md (systemd).
type notifier struct {
	log     *slog.Logger
	workers int // Config.Workers, then Scale's target, for STATUS=

	mu        sync.Mutex // orders the sends as the events came
	stopping  bool       // STOPPING=1 sent: nothing more
	upgrading bool       // RELOADING=1 sent for an in-place upgrade: READY=1 at its end
	failed    bool       // a send failed and was logged

	store []storedFd // sent to the file-descriptor store at EventUp (fdstore.go); nil: none
}

// newNotifier returns the master's notifier, nil when NOTIFY_SOCKET is unset.
// An adopting image (an in-place upgrade's next image) is reloading: its
// EventUp says nothing, its EventUpgradeDone says READY=1.
func newNotifier(log *slog.Logger, workers int, adopting bool) *notifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	return &notifier{log: log, workers: workers, upgrading: adopting}
}

// event is the notifier's lifecycle subscriber (see lifecycle).
func (n *notifier) event(e Event) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return
	}
	switch e.Kind {
	case master.EventUp:
		if n.upgrading {
			return // adopted: ready once the upgrade is done
		}
		if n.store != nil {
			logFdStore(n.log, n.store) // before READY=1: a restart right after it finds them
		}
		n.send(daemon.SdNotifyReady,
			"MAINPID="+strconv.Itoa(os.Getpid()),
			fmt.Sprintf("STATUS=serving with %d workers", n.workers))
	case master.EventRollingRestart:
		n.send(reloading(), "STATUS=rolling restart")
	case master.EventRollingRestartDone:
		status := "STATUS=rolling restart done: every worker replaced"
		switch {
		case errors.Is(e.Err, ErrCheckFailed):
			status = "STATUS=rolling restart refused, nothing replaced: " + oneLine(e.Err.Error())
		case e.Err != nil:
			status = "STATUS=rolling restart done with failures (their old workers keep serving): " + oneLine(e.Err.Error())
		}
		n.send(daemon.SdNotifyReady, status)
	case master.EventUpgrade:
		n.upgrading = true
		n.send(reloading(), "MAINPID="+strconv.Itoa(os.Getpid()), "STATUS=in-place upgrade: handing over to the new binary")
	case master.EventUpgradeDone:
		n.upgrading = false
		status := "STATUS=in-place upgrade done: every worker runs the new build"
		if e.Err != nil {
			status = "STATUS=in-place upgrade failed; running the previous build: " + oneLine(e.Err.Error())
		}
		n.send(daemon.SdNotifyReady, "MAINPID="+strconv.Itoa(os.Getpid()), status)
	case master.EventScale:
		n.workers = e.Workers
		n.send(fmt.Sprintf("STATUS=serving with %d workers (scaled)", n.workers))
	case master.EventDown:
		n.stopping = true
		n.send(daemon.SdNotifyStopping, "STATUS=stopping")
	}
}

// send sends the lines as one notification; the first failure is logged.
func (n *notifier) send(lines ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(lines, "\n")); err != nil && !n.failed {
		n.failed = true
		n.log.Warn("cluster2: sd_notify failed (logged once; the cluster keeps serving)",
			"socket", os.Getenv("NOTIFY_SOCKET"), "err", err)
	}
}

// reloading is RELOADING=1 with the MONOTONIC_USEC= line systemd wants
// with it (Type=notify-reload requires it; Type=notify ignores it).
func reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return daemon.SdNotifyReloading
	}
	return daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// oneLine folds a message onto one line: a STATUS= value ends at a newline.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
