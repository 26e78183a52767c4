package monitor

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAddr is the monitor's default address: loopback only.
const DefaultAddr = "127.0.0.1:8081"

// Options configures a Server. The zero value serves on DefaultAddr with a
// control-mode ECV, no token, no agent-check and no profiling.
type Options struct {
	// Addr is the monitor's listening address. Default DefaultAddr. A host
	// that is not a loopback address (or "localhost") makes Token
	// required for actions and profiles.
	Addr string

	// Token is the bearer token that actions (pause, resume, replace,
	// rolling restart, markUp/markDown), profiles and the cache key feed
	// require when Addr is beyond loopback ("Authorization: Bearer <token>",
	// or "access_token=<token>" in the query for links and event streams).
	// ECV, /livez and the read-only pages stay open. Beyond loopback with
	// no token, those routes answer 403. Default "".
	Token string

	// ECV configures the ECV routes and rules.
	ECV ECVOptions

	// AgentAddr, when set, is a TCP address where an HAProxy agent-check
	// responder answers one line per connection: "ready up 100%" (the
	// weight is the share of the expected workers that are active),
	// "drain" when marked down, "maint" when stopping, "down" otherwise.
	// Default "": none.
	AgentAddr string

	// ExpectedWorkers is the number of workers the cluster runs when whole,
	// for the agent's weight. Default: the number of workers seen.
	ExpectedWorkers int

	// ProfileDir is the private directory where each worker serves its
	// profiles on the unix socket ProfileSocket(ProfileDir, pid) (see
	// ServeProfiles). Default "": profiling routes answer 404.
	ProfileDir string

	// SampleInterval is the period at which the monitor samples the
	// workers for the dashboard's charts and pushes it to open pages.
	// Default 1 s.
	SampleInterval time.Duration

	// History is the number of samples a worker's chart keeps. Default 60.
	History int

	// OnEvent, when set, receives the monitor's own events: "markUp" and
	// "markDown". It must not block.
	OnEvent func(name string)

	// Logger receives the monitor's log lines. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.SampleInterval <= 0 {
		o.SampleInterval = time.Second
	}
	if o.History <= 0 {
		o.History = 60
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var err error
	o.ECV, err = o.ECV.withDefaults()
	return o, err
}

// String describes o on one line, for the log at start (never the token).
func (o Options) String() string {
	return fmt.Sprintf("addr=%s token=%v ecv={mode=%s root=%s minActive=%d 404=%v} agent=%q profiles=%v",
		o.Addr, o.Token != "", o.ECV.Mode, o.ECV.Root, o.ECV.MinActive, o.ECV.NotFoundWhenMarkedDown,
		o.AgentAddr, o.ProfileDir != "")
}

// IsLoopback reports whether addr ("host:port") binds to loopback only:
// 127.0.0.0/8, ::1 or "localhost". An empty host (every interface) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server is the master's monitor: ECV, /livez, the /debug dashboard and its
// JSON API, /deps, /status, /metrics and the workers' profiles. Create it
// with New, feed it the master's lifecycle events with HandleEvent, serve it
// with Start (or mount Handler yourself) and stop it with Close. Its methods
// are safe for concurrent use; it must not be copied. It runs in the master
// only.
type Server struct {
	opts    Options
	src     Source
	log     *slog.Logger
	ecv     *ECV
	open    bool // bound to loopback: no token needed
	handler http.Handler
	reg     *prometheus.Registry
	samp    *sampler
	hub     *hub

	stop     chan struct{}
	bg       sync.WaitGroup
	mu       sync.Mutex
	started  bool
	closed   bool
	srv      *http.Server
	ln       net.Listener
	agentLn  net.Listener
	closeErr error
}

// New returns a Server showing and controlling src. It samples src from now
// until Close, but binds nothing until Start. An Options field out of range
// is an error wrapping ErrInvalidOptions.
func New(src Source, opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, src: src, log: o.Logger.With("role", "monitor"), open: IsLoopback(o.Addr),
		stop: make(chan struct{}), hub: newHub()}
	s.ecv = newECV(o.ECV, s.activeWorkers, s.onMark)
	s.samp = newSampler(o.History)
	s.reg = s.newRegistry()
	s.handler = s.routes()
	s.samp.sample(src.Workers(), time.Now())
	s.bg.Add(1)
	go s.sampleLoop()
	return s, nil
}

// ECV returns the server's ECV, for the runtime's own mark-up and
// mark-down.
func (s *Server) ECV() *ECV { return s.ecv }

// Handler returns the monitor's routes, for tests or to mount elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds Options.Addr (and AgentAddr) and serves in the background
// until Close. A busy address is an error; nothing is left bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return ErrStarted
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("monitor: listen %s: %w", s.opts.Addr, err)
	}
	var agentLn net.Listener
	if s.opts.AgentAddr != "" {
		if agentLn, err = net.Listen("tcp", s.opts.AgentAddr); err != nil {
			ln.Close()
			return fmt.Errorf("monitor: agent-check listen %s: %w", s.opts.AgentAddr, err)
		}
	}
	s.started, s.ln, s.agentLn = true, ln, agentLn
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("monitor: serve", "err", err)
		}
	}()
	if agentLn != nil {
		s.bg.Add(1)
		go s.serveAgent(agentLn)
	}
	s.log.Info("monitor: serving", "addr", ln.Addr().String(), "options", s.opts.String())
	return nil
}

// Addr returns the bound address once started, else nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// AgentAddr returns the agent-check responder's bound address, or nil.
func (s *Server) AgentAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agentLn == nil {
		return nil
	}
	return s.agentLn.Addr()
}

// Close stops serving (open event streams end; requests in flight get a
// second to finish), stops sampling and waits for the server's goroutines.
// Closing twice returns the first result.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	close(s.stop)
	srv, agentLn := s.srv, s.agentLn
	s.mu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err = srv.Shutdown(ctx); err != nil {
			err = errors.Join(err, srv.Close())
		}
		cancel()
	}
	if agentLn != nil {
		agentLn.Close()
	}
	s.bg.Wait()
	s.mu.Lock()
	s.closeErr = err
	s.mu.Unlock()
	return err
}

// HandleEvent feeds the server a lifecycle event of the master: "up" makes
// the ECV warm, "down" makes it stopping; every event is shown on the
// dashboard's feed. It does not block.
func (s *Server) HandleEvent(e master.Event) {
	switch e.Name {
	case "up":
		s.ecv.SetWarm()
	case "down":
		s.ecv.SetStopping()
	}
	s.samp.event(e)
	if b, err := json.Marshal(eventView(e)); err == nil {
		s.hub.publish("lifecycle", b)
	}
}

func (s *Server) onMark(up bool) {
	name := "markDown"
	if up {
		name = "markUp"
	}
	s.log.Info("monitor: ecv " + name)
	s.HandleEvent(master.Event{Name: name, Time: time.Now()})
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(name)
	}
}

func (s *Server) activeWorkers() int {
	n := 0
	for _, w := range s.src.Workers() {
		if w.State == master.Active {
			n++
		}
	}
	return n
}

// routes builds the mux. Guarded routes need the token beyond loopback and
// refuse cross-origin browser requests.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	e := s.opts.ECV
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { plain(w, http.StatusOK, "ok\n") })
	mux.HandleFunc(e.Root, s.serveECV)
	mux.Handle(e.MarkUp, s.guard(s.serveMark(false)))
	mux.Handle(e.MarkDown, s.guard(s.serveMark(true)))

	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/debug", http.StatusFound)
	})
	mux.HandleFunc("GET /debug", s.serveDashboard)
	mux.HandleFunc("GET /debug/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/debug", http.StatusMovedPermanently)
	})
	mux.Handle("GET /debug/static/", staticHandler())
	mux.HandleFunc("GET /debug/events", s.serveEvents)
	mux.HandleFunc("GET /debug/api/overview", s.serveOverview)
	mux.HandleFunc("GET /debug/api/workers", s.serveWorkers)
	mux.HandleFunc("GET /debug/api/workers/{pid}", s.serveWorker)
	mux.HandleFunc("GET /debug/api/caches", s.serveCaches)
	mux.Handle("GET /debug/api/caches/{name}/changes", s.guard(http.HandlerFunc(s.serveKeyFeed)))
	mux.HandleFunc("GET /debug/api/ecv", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.ecv.Check(r.Context()))
	})
	mux.HandleFunc("GET /debug/api/events", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.samp.events())
	})
	mux.Handle("POST /debug/api/workers/{pid}/{action}", s.guard(http.HandlerFunc(s.serveWorkerAction)))
	mux.Handle("POST /debug/api/rolling-restart", s.guard(http.HandlerFunc(s.serveRollingRestart)))
	mux.Handle("POST /debug/api/ecv/markUp", s.guard(s.serveMark(false)))
	mux.Handle("POST /debug/api/ecv/markDown", s.guard(s.serveMark(true)))
	mux.Handle("GET /debug/workers/{pid}/pprof/{name...}", s.guard(http.HandlerFunc(s.serveProfile)))

	mux.HandleFunc("GET /deps", serveDeps)
	mux.HandleFunc("GET /status", s.serveStatus)
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}

// guard lets a request through when the server is bound to loopback, or
// when it carries the token; it refuses cross-origin browser requests that
// change state either way.
func (s *Server) guard(h http.Handler) http.Handler {
	h = http.NewCrossOriginProtection().Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.open {
			h.ServeHTTP(w, r)
			return
		}
		if s.opts.Token == "" {
			plain(w, http.StatusForbidden, "monitor: bound beyond loopback with no token configured: actions and profiles are off\n")
			return
		}
		got := r.URL.Query().Get("access_token")
		if a := r.Header.Get("Authorization"); a != "" {
			got, _ = strings.CutPrefix(a, "Bearer ")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cluster2 monitor"`)
			plain(w, http.StatusUnauthorized, "monitor: bearer token required\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// pidOf parses the {pid} of r and checks that it is a live worker.
func (s *Server) pidOf(w http.ResponseWriter, r *http.Request) (master.WorkerInfo, bool) {
	pid, err := strconv.Atoi(r.PathValue("pid"))
	if err == nil {
		for _, wi := range s.src.Workers() {
			if wi.Pid == pid {
				return wi, true
			}
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("monitor: no worker with pid %q", r.PathValue("pid")))
	return master.WorkerInfo{}, false
}

func (s *Server) serveWorkers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.samp.workers(s.src.Workers(), time.Now()))
}

func (s *Server) serveWorker(w http.ResponseWriter, r *http.Request) {
	wi, ok := s.pidOf(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.samp.workers([]master.WorkerInfo{wi}, time.Now())[0])
}

func (s *Server) serveWorkerAction(w http.ResponseWriter, r *http.Request) {
	wi, ok := s.pidOf(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var err error
	switch a := r.PathValue("action"); a {
	case "pause":
		err = s.src.Pause(ctx, wi.Pid)
	case "resume":
		err = s.src.Resume(ctx, wi.Pid)
	case "replace":
		err = s.src.Replace(wi.Pid)
	default:
		writeError(w, http.StatusNotFound, fmt.Errorf("monitor: unknown action %q", a))
		return
	}
	if err != nil {
		writeError(w, http.StatusConflict, err)
		return
	}
	s.log.Info("monitor: worker action", "action", r.PathValue("action"), "pid", wi.Pid)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "pid": wi.Pid, "action": r.PathValue("action")})
}

func (s *Server) serveRollingRestart(w http.ResponseWriter, r *http.Request) {
	// A rolling restart outlives the request: it runs on, and the page
	// follows it through the lifecycle feed.
	go func() {
		if err := s.src.RollingRestart(context.Background()); err != nil {
			s.log.Warn("monitor: rolling restart", "err", err)
		}
	}()
	s.log.Info("monitor: rolling restart requested")
	writeJSON(w, http.StatusAccepted, map[string]any{"ok": true, "action": "rolling-restart"})
}

func (s *Server) serveCaches(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.caches())
}

func (s *Server) caches() []cacheView {
	cs, ok := s.src.(CacheSource)
	if !ok {
		return []cacheView{}
	}
	infos := cs.Caches()
	out := make([]cacheView, len(infos))
	for i, c := range infos {
		out[i] = cacheView{CacheInfo: c, HitRatio: c.HitRatio()}
	}
	return out
}

// serveStatus answers the aggregated statuses: name → pid → value, from the
// source's StatusSource, plus the built-in "os" (each worker's latest
// heartbeat, as the original's status.os) and "ecv".
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	if ss, ok := s.src.(StatusSource); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st, err := ss.Statuses(ctx)
		if err != nil {
			writeError(w, http.StatusBadGateway, fmt.Errorf("monitor: status: %w", err))
			return
		}
		for name, v := range st {
			out[name] = v
		}
	}
	osStatus := map[string]any{}
	for _, wi := range s.src.Workers() {
		osStatus[strconv.Itoa(wi.Pid)] = heartbeatView(wi)
	}
	out["os"] = osStatus
	out["ecv"] = s.ecv.State()
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
