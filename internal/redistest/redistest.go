// Package redistest runs a real redis-server for tests and benchmarks: on a
// free loopback port, in the test's temporary directory, with no persistence,
// killed when the test ends. It can be killed with SIGKILL mid-test and
// started again on the same port, which is how the Redis recovery tests make
// Redis die and come back.
//
// It speaks no Redis protocol beyond the PING it waits for: tests talk to the
// server through the client cluster2 ships (rueidis) or through redis-cli
// ([Server.CLI]), a program that does not use cluster2.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNotInstalled is why Start skips: redis-server is not on PATH. Under CI
// (the CI variable set, as .ci/run does) Start fails instead of skipping.
var ErrNotInstalled = errors.New("redistest: redis-server is not installed (apt-get install redis-server)")

// Server is one redis-server process on 127.0.0.1.
type Server struct {
	tb   testing.TB
	path string
	dir  string
	port int
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd is reaped
}

// Start runs redis-server on a free loopback port and waits until it answers
// PING. extra are more redis-server arguments ("--maxmemory", "1mb", ...). The
// server is killed when tb ends.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal(ErrNotInstalled)
		}
		tb.Skip(ErrNotInstalled)
	}
	s := &Server{tb: tb, path: path, dir: tb.TempDir(), args: extra}
	tb.Cleanup(s.Kill)
	for attempt := 0; ; attempt++ {
		s.port = freePort(tb)
		err := s.start()
		if err == nil {
			return s
		}
		if attempt == 4 {
			tb.Fatalf("redistest: %v", err)
		}
	}
}

// Addr is the server's address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Kill ends the server with SIGKILL (no shutdown, no save) and waits for it.
// Killing a server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd, s.done = nil, nil
}

// Restart starts the server again on the same port after Kill (its data is
// gone: it runs without persistence). It fails the test if the port was
// taken meanwhile or the server does not answer.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

// CLI runs redis-cli against the server with args and returns its output
// without the trailing newline: a client that is not cluster2.
func (s *Server) CLI(args ...string) (string, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", fmt.Errorf("redistest: redis-cli: %w", err)
	}
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.port)}, args...)
	out, err := exec.Command(cli, all...).CombinedOutput()
	res := strings.TrimRight(string(out), "\n")
	if err != nil {
		return res, fmt.Errorf("redistest: redis-cli %s: %w: %s", strings.Join(args, " "), err, res)
	}
	return res, nil
}

func (s *Server) start() error {
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", s.dir, "--daemonize", "no", "--loglevel", "warning",
		"--unixsocket", ""}
	args = append(args, s.args...)
	cmd := exec.Command(s.path, args...)
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { err := cmd.Wait(); close(done); exited <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.Addr()) == nil {
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on port %d exited: %v: %s", s.port, err, lastLines(string(b), 5))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer PING in 10 s", s.port)
		}
	}
}

// ping sends one inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
