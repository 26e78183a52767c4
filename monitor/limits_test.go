package monitor_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/monitor"
)

// startReal starts a Server on a real loopback socket with opts.
func startReal(t *testing.T, opts monitor.Options, log io.Writer) (*monitor.Server, string) {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	s, err := monitor.New(newFake(101), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.Addr().String()
}

// closedByServer reports whether the server closes c within d (a read
// returns EOF or a reset).
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// A flood of idle connections holds at most MaxConns of the master's
// descriptors: the ones beyond are closed at once (and logged), and the
// monitor serves again as soon as one is given back.
func TestMaxConns(t *testing.T) {
	var log syncBuffer
	_, addr := startReal(t, monitor.Options{MaxConns: 4}, &log)
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if !closedByServer(c, 5*time.Second) {
			t.Fatal("a connection beyond MaxConns was kept open")
		}
		c.Close()
	}
	if !strings.Contains(log.String(), "too many open connections") || strings.Count(log.String(), "too many open connections") != 1 {
		t.Errorf("log: %q; want one line about the refused connections (rate-limited)", log.String())
	}
	idle[0].Close()
	// The slot is back: a request is served.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/livez")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("/livez = %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request served after a slot was freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Idle keep-alive connections are closed after IdleTimeout, silent ones
// after ReadHeaderTimeout, and headers beyond MaxHeaderBytes are 431.
func TestConnTimeouts(t *testing.T) {
	_, addr := startReal(t, monitor.Options{IdleTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond,
		MaxHeaderBytes: 4 << 10}, io.Discard)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("keep-alive GET: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if !closedByServer(c, 5*time.Second) {
		t.Fatal("an idle keep-alive connection outlived IdleTimeout by 5 s")
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if !closedByServer(silent, 5*time.Second) {
		t.Fatal("a connection sending no request outlived ReadHeaderTimeout by 5 s")
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/livez", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 16<<10))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB of headers = %d; want 431", r.StatusCode)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// childAgentEMFILE serves an agent check, then takes every descriptor it
// may open (RLIMIT_NOFILE lowered to 64) until its stdin says FREE.
func childAgentEMFILE() {
	s, err := monitor.New(newFake(101), monitor.Options{Addr: "127.0.0.1:0", AgentAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err == nil {
		err = s.Start()
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	in := bufio.NewScanner(os.Stdin)
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	var files []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		files = append(files, f)
	}
	fmt.Println("FULL", s.AgentAddr())
	in.Scan() // FREE
	for _, f := range files {
		f.Close()
	}
	fmt.Println("FREED")
	select {}
}

// An agent check whose accept failed for want of descriptors (EMFILE)
// answers again once they are free (it used to stop for good).
func TestAgentSurvivesEMFILE(t *testing.T) {
	cmd := xtesting.Command(t, "agent-emfile", nil)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	xtesting.Start(t, cmd)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "FULL ") {
		t.Fatalf("child: %q", sc.Text())
	}
	addr := strings.TrimPrefix(sc.Text(), "FULL ")
	c, err := net.Dial("tcp", addr) // queued: the child cannot accept it
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // the child's accept fails meanwhile
	io.WriteString(stdin, "FREE\n")
	if !sc.Scan() || sc.Text() != "FREED" {
		t.Fatalf("child: %q", sc.Text())
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "down\n" {
		t.Fatalf("agent check after EMFILE = %q, %v; want \"down\\n\" (not warm yet)", line, err)
	}
}
