package monitor

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"
)

// web holds the dashboard: one page, its script and its style sheet, all
// hand-written and embedded (the machines it runs on have no internet: no
// CDN, no framework).
//
//go:embed web
var web embed.FS

func staticHandler() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic("monitor: embedded web assets: " + err.Error())
	}
	return http.StripPrefix("/debug/static/", http.FileServerFS(sub))
}

func (s *Server) serveDashboard(w http.ResponseWriter, r *http.Request) {
	b, err := web.ReadFile("web/index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
	h.Set("X-Frame-Options", "DENY")
	w.Write(b)
}

func (s *Server) serveOverview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.overview())
}

// hub fans server-sent events out to the open pages. A page too slow to
// keep up loses messages rather than slowing the others.
type hub struct {
	mu   sync.Mutex
	subs map[chan sseMsg]struct{}
}

type sseMsg struct {
	event string
	data  []byte
}

func newHub() *hub { return &hub{subs: map[chan sseMsg]struct{}{}} }

func (h *hub) subscribe() (<-chan sseMsg, func()) {
	ch := make(chan sseMsg, 16)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *hub) publish(event string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- sseMsg{event, data}:
		default:
		}
	}
}

// sse starts an event stream on w; it returns nil when w cannot flush.
func sse(w http.ResponseWriter) func(event string, data []byte) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return nil
	}
	return func(event string, data []byte) error {
		var err error
		if event == "" {
			_, err = w.Write([]byte(": ping\n\n"))
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
}

const ssePing = 15 * time.Second

// serveEvents streams the dashboard: a "snapshot" (the overview) at once and
// every SampleInterval, and each "lifecycle" event as it happens.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	msgs, unsubscribe := s.hub.subscribe()
	defer unsubscribe()
	send := sse(w)
	if send == nil {
		return
	}
	b, err := json.Marshal(s.overview())
	if err != nil || send("snapshot", b) != nil {
		return
	}
	pump(r.Context(), s.stop, send, msgs, func(m sseMsg) error { return send(m.event, m.data) })
}

// pump sends what ch carries through each, and a ping every ssePing, until a
// send fails, ctx ends or stop closes.
func pump[T any](ctx context.Context, stop <-chan struct{}, send func(string, []byte) error, ch <-chan T, each func(T) error) {
	ping := time.NewTicker(ssePing)
	defer ping.Stop()
	for {
		select {
		case m := <-ch:
			if each(m) != nil {
				return
			}
		case <-ping.C:
			if send("", nil) != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-stop:
			return
		}
	}
}

// maxFeedValue is how much of a value the key feed shows.
const maxFeedValue = 256

// serveKeyFeed streams the changes of one cache's keys as "change" events
// (KeyChange). Changes a slow page cannot take are counted and reported in a
// "lost" event.
func (s *Server) serveKeyFeed(w http.ResponseWriter, r *http.Request) {
	cs, ok := s.src.(CacheSource)
	if !ok {
		writeError(w, http.StatusNotFound, ErrNoCache)
		return
	}
	name := r.PathValue("name")
	ch := make(chan KeyChange, 256)
	var lostMu sync.Mutex
	lost := 0
	stop, err := cs.WatchCache(name, func(c KeyChange) {
		if len(c.Value) > maxFeedValue {
			c.Value = truncate(c.Value, maxFeedValue)
		}
		select {
		case ch <- c:
		default:
			lostMu.Lock()
			lost++
			lostMu.Unlock()
		}
	})
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrNoCache) {
			code = http.StatusNotFound
		}
		writeError(w, code, err)
		return
	}
	defer stop()
	send := sse(w)
	if send == nil {
		return
	}
	if send("ready", []byte(`{"cache":`+jsonString(name)+`}`)) != nil {
		return
	}
	pump(r.Context(), s.stop, send, ch, func(c KeyChange) error {
		b, _ := json.Marshal(c)
		if err := send("change", b); err != nil {
			return err
		}
		lostMu.Lock()
		n := lost
		lost = 0
		lostMu.Unlock()
		if n > 0 {
			return send("lost", fmt.Appendf(nil, `{"count":%d}`, n))
		}
		return nil
	})
}

// truncate cuts s to at most n bytes on a rune boundary and marks the cut.
func truncate(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
