package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
	"golang.org/x/sys/unix"
)

// fdStore plays systemd's file-descriptor store for one service: a unixgram
// NOTIFY_SOCKET that keeps, by FDNAME, the descriptors sent with FDSTORE=1
// (SCM_RIGHTS) and drops them on FDSTOREREMOVE=1.
type fdStore struct {
	path  string
	files chan map[string]*os.File // the store after each datagram
}

func newFDStore(t *testing.T) *fdStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &fdStore{path: path, files: make(chan map[string]*os.File, 64)}
	go func() {
		store := map[string]*os.File{}
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*8))
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			kv := map[string]string{}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					kv[k] = v
				}
			}
			var fds []int
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if r, err := unix.ParseUnixRights(&m); err == nil {
						fds = append(fds, r...)
					}
				}
			}
			switch {
			case kv["FDSTOREREMOVE"] == "1":
				if f := store[kv["FDNAME"]]; f != nil {
					f.Close()
				}
				delete(store, kv["FDNAME"])
			case kv["FDSTORE"] == "1" && len(fds) == 1:
				store[kv["FDNAME"]] = os.NewFile(uintptr(fds[0]), kv["FDNAME"])
			default:
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
			snap := map[string]*os.File{}
			for k, v := range store {
				snap[k] = v
			}
			select {
			case s.files <- snap:
			default:
			}
		}
	}()
	return s
}

// wait returns the store once it holds every name.
func (s *fdStore) wait(t *testing.T, names ...string) map[string]*os.File {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-s.files:
			ok := true
			for _, n := range names {
				ok = ok && m[n] != nil
			}
			if ok {
				return m
			}
		case <-deadline:
			t.Fatalf("the store does not hold %v within 30 s", names)
		}
	}
}

// A full restart of the service (the master stopped with SIGTERM, every
// process gone, a new master started) keeps the cache warm and refuses no
// connection when the service manager keeps the master's file-descriptor
// store: the first master sends its listener and its arena memfd
// (FDSTORE=1); the test, as systemd, holds them while no master runs (a
// connection made then waits in the listener's queue) and passes them to
// the next master by socket activation (LISTEN_FDS, LISTEN_FDNAMES,
// LISTEN_PID set by a shell that execs the demo): it serves the same
// address, answers the waiting connection, and the key set before the
// restart is still in the cache (HEAD: no loader runs).
func TestDemoRestartKeepsTheCacheWarmThroughTheFDStore(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "demo")
	buildDemo(t, "v1", bin)
	store := newFDStore(t)
	rundir := t.TempDir()
	withStore := func(cmd *exec.Cmd) {
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+store.path, "FDSTORE=2")
	}
	st, _ := runBuilt(t, bin, rundir, withStore)
	kept := store.wait(t, cluster2.FDNameListener, cluster2.FDNameArena)
	req, _ := http.NewRequest(http.MethodPut, "http://"+st.Addr+"/cache/kept", strings.NewReader("warm"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT: %v %v", resp, err)
	}

	if err := unix.Kill(st.Pid, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !xtesting.Eventually(60*time.Second, func() bool { return !shm.ProcessAlive(st.Pid, st.Start) }) {
		t.Fatal("the master did not stop within 60 s")
	}
	gap, err := net.Dial("tcp", st.Addr) // no master runs: the queue of the stored listener takes it
	if err != nil {
		t.Fatalf("a connection while no master runs: %v", err)
	}
	defer gap.Close()
	if _, err := gap.Write([]byte("HEAD /cache/kept HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}

	activate := func(cmd *exec.Cmd) {
		withStore(cmd)
		cmd.Env = append(cmd.Env, "LISTEN_FDS=2", "LISTEN_FDNAMES="+cluster2.FDNameListener+":"+cluster2.FDNameArena)
		cmd.ExtraFiles = []*os.File{kept[cluster2.FDNameListener], kept[cluster2.FDNameArena]}
		// LISTEN_PID must be the master's pid: a shell sets it and execs.
		cmd.Args = append([]string{"sh", "-c", `export LISTEN_PID=$$; exec "$0" "$@"`}, cmd.Args...)
		cmd.Path = "/bin/sh"
	}
	st2, _ := runBuilt(t, bin, rundir, activate)
	if st2.Addr != st.Addr {
		t.Errorf("the restarted master serves %s; want the stored listener's %s", st2.Addr, st.Addr)
	}
	gap.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(gap), nil)
	if err != nil {
		t.Fatalf("the connection made while no master ran: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD of the key set before the restart, on the waiting connection: %s; want 200 (a warm cache)", resp.Status)
	}
	if ok, v := cached(t, st2.Addr, "kept"); !ok || !strings.Contains(v, "warm") {
		t.Errorf("after the restart the key is cached %v, %q; want a hit with its value", ok, v)
	}
}
