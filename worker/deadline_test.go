package worker_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/worker"
)

// serveDeadline serves h under RequestDeadline (timeout d) on a loopback
// socket, counting hung requests, and returns its address.
func serveDeadline(t *testing.T, d time.Duration, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hung atomic.Int64
	srv := &http.Server{Handler: worker.ServerConfig{RequestTimeout: d}.RequestDeadline(h, func() { hung.Add(1) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), &hung
}

func fetch(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, string(b)
}

// TestRequestDeadline: a handler that writes nothing by the deadline has
// its client answered 503 and its context cancelled, and its later writes
// fail; one that began its response keeps it (streamed, not buffered), its
// context cancelled at the deadline; a fast one is untouched. Only the
// first two count as hung.
func TestRequestDeadline(t *testing.T) {
	late := make(chan error, 1)
	url, hung := serveDeadline(t, 200*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/silent":
			<-r.Context().Done() // cancelled at the deadline
			time.Sleep(50 * time.Millisecond)
			w.Header().Set("X-Late", "1")
			_, err := w.Write([]byte("too late"))
			late <- err
		case "/stream":
			fmt.Fprint(w, "begun;")
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			fmt.Fprint(w, "cancelled")
		default:
			w.Header().Set("X-Fast", "1")
			fmt.Fprint(w, "fast")
		}
	})

	resp, body := fetch(t, url+"/silent")
	if resp.StatusCode != http.StatusServiceUnavailable || body != "request timed out\n" || !resp.Close || resp.Header.Get("X-Late") != "" {
		t.Errorf("silent handler: %d %q close=%v header %v; want 503 \"request timed out\" with Connection: close", resp.StatusCode, body, resp.Close, resp.Header)
	}
	if err := <-late; !errors.Is(err, http.ErrHandlerTimeout) {
		t.Errorf("a write after the deadline answered: %v; want http.ErrHandlerTimeout", err)
	}

	resp, body = fetch(t, url+"/stream")
	if resp.StatusCode != 200 || body != "begun;cancelled" {
		t.Errorf("streaming handler: %d %q; want 200 \"begun;cancelled\" (its response kept, its context cancelled)", resp.StatusCode, body)
	}

	resp, body = fetch(t, url+"/fast")
	if resp.StatusCode != 200 || body != "fast" || resp.Header.Get("X-Fast") != "1" {
		t.Errorf("fast handler: %d %q header %v", resp.StatusCode, body, resp.Header)
	}
	if n := hung.Load(); n != 2 {
		t.Errorf("%d requests counted as hung; want 2 (silent, stream)", n)
	}
}

// TestRequestDeadlineLetsAHijackGo: a hijacked connection (a WebSocket)
// leaves the deadline at the hijack.
func TestRequestDeadlineLetsAHijackGo(t *testing.T) {
	url, hung := serveDeadline(t, 100*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer c.Close()
		time.Sleep(300 * time.Millisecond) // past the deadline
		rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nlater\n")
		rw.Flush()
	})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "later\n" {
		t.Errorf("hijacked: %d %q; want the handler's own 200 \"later\"", resp.StatusCode, b)
	}
	if n := hung.Load(); n != 0 {
		t.Errorf("%d hung; want 0 (the hijack ended the deadline)", n)
	}
}

// TestRequestDeadlineOff: without RequestTimeout the handler is served as it is.
func TestRequestDeadlineOff(t *testing.T) {
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, d := range []time.Duration{0, -1} {
		got := worker.ServerConfig{RequestTimeout: d}.RequestDeadline(h, nil)
		if fmt.Sprintf("%p", got) != fmt.Sprintf("%p", h) {
			t.Errorf("RequestTimeout %v: the handler was wrapped", d)
		}
	}
}
