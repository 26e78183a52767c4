package cluster2_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
)

// socketActivate is Debian's systemd-socket-activate (package systemd).
const socketActivate = "/usr/bin/systemd-socket-activate"

// TestSocketActivation runs a cluster under systemd-socket-activate, which
// binds the port, waits for a first connection and then execs the master
// with the socket as LISTEN_FDS: the master serves that socket (it binds
// none: the port is taken), the workers get it as fd 3, the first
// connection (queued before the master existed) is answered by a worker
// too, and no worker sees LISTEN_*.
func TestSocketActivation(t *testing.T) {
	if _, err := os.Stat(socketActivate); err != nil {
		if os.Getenv("CI") != "" { // .ci/run installs it
			t.Fatalf("%s is missing in CI (Debian package systemd): %v", socketActivate, err)
		}
		t.Skipf("socket activation not tested: %s is missing (Debian package systemd): %v", socketActivate, err)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := clustertest.Spec{
		Child: "cluster",
		Env:   []string{"T_WORKERS=2", "T_NOWARMUP=1", "T_ADDR=" + addr},
		Wrap: func(cmd *exec.Cmd) {
			// The tool gives the program only LISTEN_* and what -E sets.
			args := []string{socketActivate, "-l", addr}
			for _, kv := range cmd.Env {
				args = append(args, "-E", kv)
			}
			cmd.Args = append(args, cmd.Args...)
			cmd.Args[len(args)] = cmd.Path
			cmd.Path = socketActivate
		},
	}.Launch(t)

	// The tool execs the master at the first connection, which waits in
	// the backlog of the socket the master is then handed.
	var first net.Conn
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			first = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer first.Close()
	p.WaitReady()
	if p.Addr != addr {
		t.Fatalf("the cluster serves %s; want the activated %s", p.Addr, addr)
	}

	first.SetDeadline(time.Now().Add(wait))
	if _, err := first.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil {
		t.Fatalf("the connection that activated the socket: %v", err)
	}
	var r clustertest.Reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	workers := p.ActivePids()
	if !workers[r.Pid] || r.Role != "worker" || !r.Nonblock {
		t.Fatalf("the first connection was answered by %+v; want one of the workers %v, with a non-blocking socket", r, workers)
	}

	served := map[int]bool{}
	for i := 0; i < 50 && len(served) < len(workers); i++ {
		var r clustertest.Reply
		resp, err := p.Client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !workers[r.Pid] {
			t.Fatalf("request %d served by pid %d, not a worker %v", i, r.Pid, workers)
		}
		served[r.Pid] = true
	}
	for pid := range workers {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.HasPrefix(kv, []byte("LISTEN_")) {
				t.Fatalf("worker %d sees %s", pid, kv)
			}
		}
	}
	t.Logf("the activated %s served by workers %v", addr, served)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
