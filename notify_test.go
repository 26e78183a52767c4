package cluster2_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"golang.org/x/sys/unix"
)

// notification is one datagram read from NOTIFY_SOCKET: its text and the
// pid of the process that sent it (SCM_CREDENTIALS).
type notification struct {
	msg string
	pid int
}

// notifySocket binds a unixgram socket in a temporary directory, as systemd
// does for a Type=notify service, and returns its path and the datagrams it
// receives (with their senders' pids, which the kernel fills in).
func notifySocket(t *testing.T) (string, <-chan notification) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	ch := make(chan notification, 64)
	go func() {
		defer close(ch)
		buf, oob := make([]byte, 4096), make([]byte, 512)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			nt := notification{msg: string(buf[:n])}
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if cred, err := unix.ParseUnixCredentials(&m); err == nil {
						nt.pid = int(cred.Pid)
					}
				}
			}
			ch <- nt
		}
	}()
	return path, ch
}

// nextNotification returns the next datagram; none within wait fails the
// test.
func nextNotification(t *testing.T, ch <-chan notification, what string) notification {
	t.Helper()
	select {
	case n, ok := <-ch:
		if !ok {
			t.Fatalf("waiting for %s: the socket closed", what)
		}
		return n
	case <-time.After(wait):
		t.Fatalf("no notification (%s) within %v", what, wait)
	}
	return notification{}
}

// expectFrom returns the next notification, failing the test unless the
// master (pid) sent it and it has every line of lines.
func expectFrom(t *testing.T, ch <-chan notification, master int, what string, lines ...string) notification {
	t.Helper()
	n := nextNotification(t, ch, what)
	if n.pid != master {
		t.Fatalf("%s: sent by pid %d, not the master (%d): %q", what, n.pid, master, n.msg)
	}
	for _, l := range lines {
		if !n.hasLine(l) {
			t.Fatalf("%s: %q has no line %q", what, n.msg, l)
		}
	}
	t.Logf("%s: %q", what, n.msg)
	return n
}

// hasLine reports whether the notification has the line l.
func (n notification) hasLine(l string) bool {
	for _, x := range strings.Split(n.msg, "\n") {
		if x == l {
			return true
		}
	}
	return false
}

// TestNotify runs a real cluster with a datagram socket as NOTIFY_SOCKET:
// the master (and no other process) says READY=1 with its MAINPID once
// Listen returned, RELOADING=1 then READY=1 around the rolling restart of a
// SIGHUP, and STOPPING=1 on SIGTERM, and nothing after it.
func TestNotify(t *testing.T) {
	path, ch := notifySocket(t)
	tc := startCluster(t, "T_WORKERS=2", "T_NOWARMUP=1", "NOTIFY_SOCKET="+path)
	master := tc.Pid()
	expect := func(what string, lines ...string) notification {
		t.Helper()
		return expectFrom(t, ch, master, what, lines...)
	}

	expect("start", "READY=1", "MAINPID="+strconv.Itoa(master))
	before := tc.ActivePids()

	tc.Signal(syscall.SIGHUP)
	expect("SIGHUP", "RELOADING=1")
	done := expect("end of the rolling restart", "READY=1")
	if !strings.Contains(done.msg, "STATUS=rolling restart done") {
		t.Fatalf("end of the rolling restart: %q has no STATUS= saying so", done.msg)
	}
	for pid := range tc.ActivePids() {
		if before[pid] {
			t.Fatalf("worker %d survived the rolling restart that READY=1 ended", pid)
		}
	}

	tc.Signal(syscall.SIGTERM)
	expect("SIGTERM", "STOPPING=1")
	if !tc.WaitExit(wait) {
		t.Fatal("the master did not exit after SIGTERM")
	}
	select {
	case n, ok := <-ch:
		if ok {
			t.Fatalf("a notification after STOPPING=1: %q from pid %d", n.msg, n.pid)
		}
	default:
	}
}

// TestUpgradeInPlaceNotifies: SIGUSR2 upgrades the master in place (the test
// binary execs itself: a good "new build"). The master's pid is the same
// process throughout (the service manager's MAINPID stays true): it says
// RELOADING=1 with its MAINPID before the execve and READY=1, same MAINPID,
// once every worker was replaced by the new image; no other pid notifies.
func TestUpgradeInPlaceNotifies(t *testing.T) {
	path, ch := notifySocket(t)
	tc := startCluster(t, "T_WORKERS=2", "T_NOWARMUP=1", "NOTIFY_SOCKET="+path)
	master := tc.Pid()
	mainpid := "MAINPID=" + strconv.Itoa(master)
	expect := func(what string, lines ...string) notification {
		t.Helper()
		return expectFrom(t, ch, master, what, lines...)
	}
	expect("start", "READY=1", mainpid)
	before := tc.ActivePids()

	tc.Signal(syscall.SIGUSR2)
	expect("SIGUSR2", "RELOADING=1", mainpid)
	tc.ReadyAgain(wait) // the next image's test control server
	done := expect("end of the upgrade", "READY=1", mainpid)
	if !strings.Contains(done.msg, "STATUS=in-place upgrade done") {
		t.Fatalf("end of the upgrade: %q has no STATUS= saying it is done", done.msg)
	}
	after := tc.ActivePids()
	if len(after) != 2 {
		t.Fatalf("workers %v after the upgrade; want 2", after)
	}
	for pid := range after {
		if before[pid] {
			t.Fatalf("worker %d survived the upgrade that READY=1 ended", pid)
		}
	}
	if !clustertest.Alive(master) {
		t.Fatal("the master is gone")
	}
	var st map[string]json.RawMessage
	resp, err := http.Get("http://" + tc.Mon + "/status") // the same monitor socket, served by the next image
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	var up map[string]cluster2.UpgradeStatus
	if err == nil {
		err = json.Unmarshal(st[cluster2.StatusUpgrade], &up)
	}
	if err != nil {
		t.Fatal(err)
	}
	if u := up[strconv.Itoa(master)]; u.State != "done" || u.Error != "" || u.Ended.Before(u.Started) {
		t.Fatalf("/status's upgrade: %+v; want done, no error", u)
	}
}

// upgradeDone waits until the upgrade started after since is done.
func upgradeDone(t *testing.T, tc *testCluster, since time.Time) {
	t.Helper()
	if u, err := tc.WaitUpgrade(since, wait); err != nil || u.State != "done" {
		t.Fatalf("upgrade: %+v, %v; want done", u, err)
	}
}

// TestUpgradeKeepsTheECV: the ECV answers up at every poll through an
// in-place upgrade (the next image serves the handed-over monitor socket only
// once its master adopted the cluster and is up: queued polls wait, none is
// answered down), and an operator's mark-down survives an upgrade.
func TestUpgradeKeepsTheECV(t *testing.T) {
	tc := startCluster(t, "T_WORKERS=2", "T_NOWARMUP=1")
	ecv := func() (int, string) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + tc.Mon + "/ecv")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, strings.TrimSpace(string(b[:n]))
	}
	if !xtesting.Eventually(wait, func() bool { c, _ := ecv(); return c == 200 }) {
		t.Fatal("the ECV never says up")
	}
	stop := make(chan struct{})
	bad := make(chan string, 1)
	polls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c, body := ecv(); c != 200 {
				select {
				case bad <- fmt.Sprintf("%d %q", c, body):
				default:
				}
			}
			polls++
			time.Sleep(time.Millisecond)
		}
	}()
	since := time.Now()
	tc.Signal(syscall.SIGUSR2)
	upgradeDone(t, tc, since)
	close(stop)
	<-done
	select {
	case b := <-bad:
		t.Fatalf("the ECV answered %s during the upgrade (%d polls)", b, polls)
	default:
	}
	t.Logf("%d ECV polls through the upgrade, every one up", polls)

	if code, body := request("POST", "http://"+tc.Mon+"/ecv/markDown"); code != 200 {
		t.Fatalf("markDown: %d %q", code, body)
	}
	since = time.Now()
	tc.Signal(syscall.SIGUSR2)
	upgradeDone(t, tc, since)
	if c, body := ecv(); c != 503 || !strings.HasPrefix(body, "ECV DISABLED") {
		t.Fatalf("ECV after an upgrade of a marked-down cluster: %d %q; want 503 ECV DISABLED", c, body)
	}
}
