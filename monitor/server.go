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
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/status"
	"github.com/cluster2/cluster2/worker"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAddr is the monitor's default address: loopback only.
const DefaultAddr = "127.0.0.1:8081"

// Options configures a Server. The zero value serves on DefaultAddr with a
// control-mode ECV, no token, no agent-check and no profiling.
type Options struct {
	// Addr is the monitor's listening address. Default DefaultAddr. A host
	// that is not a loopback address (or "localhost") makes Token
	// required for the guarded routes (see Token).
	Addr string

	// Token is the bearer token of the guarded routes: the actions (pause,
	// resume, replace, rolling restart, markUp/markDown), the profiles, the
	// cache key feed (it shows values) and /status (applications' own
	// statuses). When set it is required wherever the monitor listens,
	// loopback included: "Authorization: Bearer <token>" or, only when no
	// Authorization header is sent, "access_token=<token>" in the query
	// (for links and event streams, which cannot set headers). The ECV,
	// /livez, the dashboard and its figures, /deps and /metrics stay open
	// (see docs/monitor.md's threat model). With no token, a loopback
	// monitor lets any local user use the guarded routes, and one beyond
	// loopback answers them 403; Start warns of either. Default "".
	Token string

	// AllowedHosts are the host names (no port) the monitor answers to in
	// the Host header besides the loopback names and addresses (localhost,
	// 127.0.0.0/8, ::1), against DNS rebinding: a page of evil.example that
	// resolves its name to 127.0.0.1 sends "Host: evil.example". A loopback
	// monitor answers only those; one beyond loopback answers any Host while
	// AllowedHosts is empty, else also IP addresses and these names. Other
	// Hosts get 403. Default none.
	AllowedHosts []string

	// ECV configures the ECV routes and rules.
	ECV ECVOptions

	// MaxConns caps the monitor's open HTTP connections: one accepted
	// beyond it is closed at once (logged at most every 10 s), so that a
	// flood of connections never takes more than MaxConns of the master's
	// file descriptors (the master needs them to fork workers). Open
	// dashboards hold one each (their event stream). Default
	// DefaultMaxConns (128).
	MaxConns int

	// IdleTimeout closes a keep-alive connection idle that long. Default
	// DefaultIdleTimeout (75 s).
	IdleTimeout time.Duration

	// ReadHeaderTimeout bounds the reading of a request's headers (a
	// connection that sends none is closed after it). The monitor's routes
	// read no body. Default DefaultReadHeaderTimeout (10 s).
	ReadHeaderTimeout time.Duration

	// MaxHeaderBytes caps a request's headers (431 beyond). Default
	// DefaultMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int

	// AgentAddr, when set, is a TCP address where an HAProxy agent-check
	// responder answers one line per connection: "ready up 100%" (the
	// weight is the share of the expected workers that are active),
	// "drain" when marked down, "maint" when stopping, "down" otherwise.
	// Default "": none.
	AgentAddr string

	// Listener and AgentListener, when set, are served instead of binding
	// Addr and AgentAddr (a master's next image serves the sockets its
	// previous image bound: an in-place upgrade refuses no connection). The
	// Server owns them: Close closes them.
	Listener, AgentListener net.Listener

	// ExpectedWorkers is the number of workers the cluster runs when whole,
	// for the agent's weight. Default: the number of workers seen. A
	// ScaleSource's target replaces it.
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

	// OnEvent, when set, receives the monitor's own events, the ECV's
	// marks (master.EventMarkUp, master.EventMarkDown), in place of
	// HandleEvent: the owner delivers them with the master's events to its
	// subscribers, this server's HandleEvent among them (cluster2 does), so
	// that one list orders every event. Without it the server hands its
	// marks to HandleEvent itself. It must not block.
	OnEvent func(master.Event)

	// Build is the master's own build (cluster2 sets it: Config.Version,
	// the toolchain, the revision, the executable, the layout): in /status
	// ("build", under the master's pid, beside each worker's), /metrics
	// (cluster2_build_info) and the dashboard's header. Default: the zero
	// Info.
	Build build.Info

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
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
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
	return fmt.Sprintf("addr=%s token=%v hosts=%v maxConns=%d idle=%s ecv={mode=%s root=%s minActive=%d 404=%v markWithGET=%v} agent=%q profiles=%v",
		o.Addr, o.Token != "", o.AllowedHosts, o.MaxConns, o.IdleTimeout, o.ECV.Mode, o.ECV.Root, o.ECV.MinActive,
		o.ECV.NotFoundWhenMarkedDown, o.ECV.MarkWithGET, o.AgentAddr, o.ProfileDir != "")
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
	_        nocopy.NoCopy
	opts     Options
	src      Source
	log      *slog.Logger
	ecv      *ECV
	loopback bool // bound to loopback only (IsLoopback of Options.Addr)
	handler  http.Handler
	reg      *prometheus.Registry
	samp     *sampler
	hub      *hub

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
// is an error wrapping ErrInvalidConfig.
func New(src Source, opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, src: src, log: o.Logger.With("role", "monitor"), loopback: IsLoopback(o.Addr),
		stop: make(chan struct{}), hub: newHub()}
	s.ecv = newECV(o.ECV, s.activeWorkers, s.onMark)
	if ps, ok := src.(PersistSource); ok {
		s.ecv.down = func() string {
			if pi, ok := ps.Persist(); ok && pi.Failing && pi.DownWhileFailing {
				return "the cache's log cannot be written: " + pi.Error
			}
			return ""
		}
	}
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
	ln, agentLn := s.opts.Listener, s.opts.AgentListener
	var err error
	if ln == nil {
		if ln, err = net.Listen("tcp", s.opts.Addr); err != nil {
			if agentLn != nil {
				agentLn.Close()
			}
			return fmt.Errorf("monitor: listen %s: %w", s.opts.Addr, err)
		}
	}
	if agentLn == nil && s.opts.AgentAddr != "" {
		if agentLn, err = net.Listen("tcp", s.opts.AgentAddr); err != nil {
			ln.Close()
			return fmt.Errorf("monitor: agent-check listen %s: %w", s.opts.AgentAddr, err)
		}
	}
	s.started, s.ln, s.agentLn = true, ln, agentLn
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout: s.opts.IdleTimeout, MaxHeaderBytes: s.opts.MaxHeaderBytes,
		ErrorLog: worker.NewErrorLog(s.log, time.Second)} // accept errors (EMFILE): a line a second at most
	limited := newLimitListener(ln, s.opts.MaxConns, s.log)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.srv.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("monitor: serve", "err", err)
		}
	}()
	if agentLn != nil {
		s.bg.Add(1)
		go s.serveAgent(agentLn)
	}
	s.log.Info("monitor: serving", "addr", ln.Addr().String(), "options", s.opts.String())
	switch {
	case s.opts.Token == "" && s.loopback:
		s.log.Warn("monitor: no token: any local user can pause, replace and restart workers, mark the cluster down, take profiles and read cache values (set a token)",
			"addr", ln.Addr().String())
	case s.opts.Token == "":
		s.log.Warn("monitor: bound beyond loopback with no token: actions, profiles, the key feed and /status are off (403), the dashboard's figures and /metrics are open to the network",
			"addr", ln.Addr().String())
	}
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

// Listeners returns the sockets the server accepts on once started (the
// agent-check's nil without one): for a handover to the next image of this
// process. The Server keeps them.
func (s *Server) Listeners() (ln, agent net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln, s.agentLn
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

// HandleEvent feeds the server a lifecycle event of the master:
// master.EventUp makes the ECV warm, master.EventDown makes it stopping;
// every event is shown on the dashboard's feed, under its Name. It does not
// block.
func (s *Server) HandleEvent(e master.Event) {
	switch e.Kind {
	case master.EventUp:
		s.ecv.SetWarm()
	case master.EventDown:
		s.ecv.SetStopping()
	}
	s.samp.event(e)
	if b, err := json.Marshal(eventView(e)); err == nil {
		s.hub.publish("lifecycle", b)
	}
}

func (s *Server) onMark(up bool) {
	e := master.Event{Kind: master.EventMarkDown, Time: time.Now()}
	if up {
		e.Kind = master.EventMarkUp
	}
	s.log.Info("monitor: ecv " + e.Name())
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e) // back to HandleEvent through the owner's subscribers
		return
	}
	s.HandleEvent(e)
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

// routes builds the mux. Every route but the ECV and /livez checks the Host
// header (hostOK) and refuses cross-site browser requests (browser); the
// guarded ones also need the token (guard).
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	e := s.opts.ECV
	b := func(h http.HandlerFunc) http.Handler { return s.browser(h) }
	mux.Handle(e.MarkUp, s.guard(s.serveMark(false, e.MarkWithGET)))
	mux.Handle(e.MarkDown, s.guard(s.serveMark(true, e.MarkWithGET)))

	mux.Handle("GET /{$}", b(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/debug", http.StatusFound)
	}))
	mux.Handle("GET /debug", b(s.serveDashboard))
	mux.Handle("GET /debug/{$}", b(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/debug", http.StatusMovedPermanently)
	}))
	mux.Handle("GET /debug/static/", s.browser(staticHandler()))
	mux.Handle("GET /debug/events", b(s.serveEvents))
	mux.Handle("GET /debug/api/overview", b(s.serveOverview))
	mux.Handle("GET /debug/api/workers", b(s.serveWorkers))
	mux.Handle("GET /debug/api/workers/{pid}", b(s.serveWorker))
	mux.Handle("GET /debug/api/caches", b(s.serveCaches))
	mux.Handle("GET /debug/api/caches/{name}/changes", s.guard(http.HandlerFunc(s.serveKeyFeed)))
	mux.Handle("GET /debug/api/ecv", b(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.ecv.Check(r.Context()))
	}))
	mux.Handle("GET /debug/api/events", b(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.samp.events())
	}))
	mux.Handle("POST /debug/api/workers/{pid}/{action}", s.guard(http.HandlerFunc(s.serveWorkerAction)))
	mux.Handle("POST /debug/api/rolling-restart", s.guard(http.HandlerFunc(s.serveRollingRestart)))
	mux.Handle("POST /debug/api/upgrade", s.guard(http.HandlerFunc(s.serveUpgrade)))
	mux.Handle("POST /debug/api/scale", s.guard(http.HandlerFunc(s.serveScale)))
	mux.Handle("POST /debug/api/ecv/markUp", s.guard(s.serveMark(false, false)))
	mux.Handle("POST /debug/api/ecv/markDown", s.guard(s.serveMark(true, false)))
	mux.Handle("GET /debug/workers/{pid}/pprof/{name...}", s.guard(http.HandlerFunc(s.serveProfile)))

	mux.Handle("GET /deps", b(serveDeps))
	mux.Handle("GET /status", s.guard(http.HandlerFunc(s.serveStatus)))
	mux.Handle("GET /metrics", s.browser(s.metricsHandler()))

	// The ECV and /livez answer anyone, whatever the Host (a load
	// balancer's check may send its own) and the site: they only say up or
	// down.
	lb := http.NewServeMux()
	lb.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { plain(w, http.StatusOK, "ok\n") })
	lb.HandleFunc(e.Root, s.serveECV)
	lb.Handle("/", s.hostOK(mux))
	return lb
}

// hostOK answers 403 to a request whose Host header the monitor does not
// answer to (Options.AllowedHosts), before any route: against DNS
// rebinding, where a page's own name resolves to this machine and the
// browser sends that name. A request without a Host (HTTP/1.0) is let
// through: no browser sends one.
func (s *Server) hostOK(h http.Handler) http.Handler {
	allowed := make(map[string]bool, len(s.opts.AllowedHosts))
	for _, n := range s.opts.AllowedHosts {
		allowed[canonHost(n)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" {
			h.ServeHTTP(w, r)
			return
		}
		name := canonHost(hostOnly(r.Host))
		ip := net.ParseIP(name)
		switch {
		case name == "localhost" || ip != nil && ip.IsLoopback() || allowed[name]:
		case !s.loopback && (len(allowed) == 0 || ip != nil):
		default:
			plain(w, http.StatusForbidden, fmt.Sprintf("monitor: Host %q is not a name this monitor answers to (loopback names, or Options.AllowedHosts)\n", r.Host))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostOnly returns the host of a Host header, without its port and the
// brackets of an IPv6 address.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func canonHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// crossSite reports whether r comes from a browser page of another site (or
// another origin): Sec-Fetch-Site other than same-origin or none (typed in,
// a bookmark), or an Origin header whose host is not r's Host ("null"
// included). A request with neither header is not a browser's cross-site
// request (every browser sends one or the other on one).
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	if o, ok := r.Header["Origin"]; ok {
		if len(o) != 1 {
			return true
		}
		u, err := url.Parse(o[0])
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return true
		}
	}
	return false
}

// browser refuses cross-site browser requests (crossSite) with 403, for
// every method: a GET from an <img> or a link of another site is refused
// like a POST from its form.
func (s *Server) browser(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSite(r) {
			plain(w, http.StatusForbidden, "monitor: cross-site request refused\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// guard is browser, then the token: when Options.Token is set a request
// must carry it (tokenOK) wherever the monitor listens; without a token
// the route is open on loopback and off (403) beyond.
func (s *Server) guard(h http.Handler) http.Handler {
	return s.browser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.opts.Token == "" && s.loopback:
		case s.opts.Token == "":
			plain(w, http.StatusForbidden, "monitor: bound beyond loopback with no token configured: actions, profiles, the key feed and /status are off\n")
			return
		case !s.tokenOK(r):
			w.Header().Set("WWW-Authenticate", `Bearer realm="cluster2 monitor"`)
			plain(w, http.StatusUnauthorized, "monitor: bearer token required\n")
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// tokenOK reports whether r carries Options.Token: in its one
// Authorization header, which must read "Bearer <token>", or, only when r
// has no Authorization header at all, in its one access_token query
// parameter.
func (s *Server) tokenOK(r *http.Request) bool {
	var got string
	if a, ok := r.Header["Authorization"]; ok {
		if len(a) != 1 {
			return false
		}
		if got, ok = strings.CutPrefix(a[0], "Bearer "); !ok {
			return false
		}
	} else {
		q := r.URL.Query()["access_token"]
		if len(q) != 1 {
			return false
		}
		got = q[0]
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) == 1
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
	if r.URL.Query().Get("wait") != "" {
		// ?wait=1: the answer is the restart's outcome (the check of the new
		// binary included): 200 once every worker is replaced, 409 with the
		// error otherwise. A client that gives up leaves the restart running.
		s.log.Info("monitor: rolling restart requested (waiting)")
		if err := s.src.RollingRestart(r.Context()); err != nil {
			s.log.Warn("monitor: rolling restart", "err", err)
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "action": "rolling-restart"})
		return
	}
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

// serveUpgrade begins an in-place upgrade of the master: 409 with the reason
// when it cannot begin (the new binary fails its check, another upgrade or a
// replacement holds the master); 202 once it has begun, sent before the
// master replaces its image (this connection closes then). The outcome is
// the upgrade status in /status and the "upgrade-done" event.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	us, ok := s.src.(UpgradeSource)
	if !ok {
		writeError(w, http.StatusNotFound, errors.New("monitor: this cluster cannot upgrade in place"))
		return
	}
	exec, err := us.PrepareUpgrade(r.Context())
	if err != nil {
		writeError(w, http.StatusConflict, err)
		return
	}
	s.log.Info("monitor: in-place upgrade requested")
	writeJSON(w, http.StatusAccepted, map[string]any{"ok": true, "action": "upgrade"})
	http.NewResponseController(w).Flush() // the answer is in the socket before the image is replaced
	if err := exec(); err != nil {
		s.log.Error("monitor: in-place upgrade", "err", err)
	}
}

// serveScale sets the worker count to ?workers=N and answers once the
// cluster has it: 200, or 409 with the reason when it is refused (above the
// ceiling, below 1, during an upgrade) or a new worker failed; 400 without
// an integer N. A client that gives up leaves the scale running.
func (s *Server) serveScale(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.src.(ScaleSource)
	if !ok {
		writeError(w, http.StatusNotFound, errors.New("monitor: this cluster cannot scale"))
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("workers"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("monitor: scale: workers=N (an integer) is required: %w", err))
		return
	}
	s.log.Info("monitor: scale requested", "workers", n)
	if err := ss.Scale(r.Context(), n); err != nil {
		s.log.Warn("monitor: scale", "workers", n, "err", err)
		writeError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "action": "scale", "workers": n})
}

func (s *Server) serveCaches(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.caches())
}

func (s *Server) caches() []cacheView {
	cs, ok := s.src.(CacheSource)
	if !ok {
		return []cacheView{}
	}
	if infos := cs.Caches(); infos != nil {
		return infos
	}
	return []cacheView{}
}

// serveStatus answers the aggregated statuses: name → pid → value, from the
// source's StatusSource, plus "ecv" (the ECV's state). "status.os" (each
// worker's latest heartbeat) is always the master's own view of the
// workers' heartbeats, as worker.Heartbeat (its JSON form: the same shape
// each worker registers), read without asking the workers.
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
	osStatus := map[string]worker.Heartbeat{}
	for _, wi := range s.src.Workers() {
		if wi.Heartbeat.At != 0 {
			osStatus[strconv.Itoa(wi.Pid)] = wi.Heartbeat
		}
	}
	out[status.NameOS] = osStatus
	out["ecv"] = s.ecv.State()
	out[statusBuild] = s.builds()
	writeJSON(w, http.StatusOK, out)
}

// statusBuild names the /status entry of every process's build: pid → the
// master's build.Info, or a worker's master.Build (the same names for the
// fields both have).
const statusBuild = "build"

func (s *Server) builds() map[string]any {
	out := map[string]any{strconv.Itoa(os.Getpid()): s.opts.Build}
	for _, wi := range s.src.Workers() {
		out[strconv.Itoa(wi.Pid)] = wi.Build
	}
	return out
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
