package clustertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/monitor"
	"golang.org/x/sys/unix"
)

// Scenario variables of [Child] (the test binary re-executed as a master,
// whose Listen re-executes it as workers: they inherit these).
const (
	EnvWorkers     = "T_WORKERS"       // number of workers
	EnvReplaceTO   = "T_REPLACE_TO"    // Config.ReplaceTimeout (default 10 s)
	EnvStopTO      = "T_STOP_TO"       // Config.StopTimeout (default 10 s)
	EnvRetries     = "T_RETRIES"       // Config.ReplaceRetries
	EnvWarmFail    = "T_WARMFAIL"      // WarmUp fails while this file exists
	EnvWarmCrash   = "T_WARMCRASH"     // the worker exits during WarmUp while this file exists
	EnvWarmHang    = "T_WARMHANG"      // WarmUp blocks while this file exists
	EnvStuckOnStop = "T_STUCK_ON_STOP" // a worker whose main never returns and ignores SIGTERM
	EnvHeartbeat   = "T_HEARTBEAT"     // Config.HeartbeatInterval (default 200 ms)
	EnvNanny       = "T_NANNY"         // Config.NannyTolerance (default off)
	EnvMemLimit    = "T_MEMLIMIT"      // Config.MemoryLimit
	EnvPidDir      = "T_PIDDIR"        // Config.PidDir
	EnvTLS         = "T_TLS"           // serve TLS through Config.NewServer
	EnvNoFile      = "T_NOFILE"        // the master's RLIMIT_NOFILE (soft and hard)
	EnvIdle        = "T_IDLE"          // Config.Server.IdleTimeout
	EnvHeaderTO    = "T_HEADER_TO"     // Config.Server.ReadHeaderTimeout
	EnvBodyTO      = "T_BODY_TO"       // Config.Server.BodyReadTimeout
	EnvMaxHeader   = "T_MAXHDR"        // Config.Server.MaxHeaderBytes
	EnvConfFail    = "T_CONFFAIL"      // ConfigureApp fails while this file exists
	EnvAgent       = "T_AGENT"         // Monitor.AgentAddr
	EnvNoWarmUp    = "T_NOWARMUP"      // no Config.WarmUp (the fastest start)
	EnvMonitor     = "T_MONITOR"       // Config.MonitorAddr (default 127.0.0.1:0)
	EnvToken       = "T_TOKEN"         // Config.Monitor.Token
	EnvInFlight    = "T_INFLIGHT"      // /slow creates this file when it starts
	EnvProfileUp   = "T_PROFILE_UP"    // WarmUp fails unless the worker's profile socket is up already
	EnvAddr        = "T_ADDR"          // Config.Addr (default 127.0.0.1:0)
	EnvVersion     = "T_VERSION"       // Config.Version
	EnvMaxWorkers  = "T_MAXWORKERS"    // Config.MaxWorkers
	EnvArenaSize   = "T_ARENA"         // Config.ArenaSize, in bytes
	EnvServe       = "T_SERVE"         // serve Handler through Config.Serve and Drain (an http.Server as a custom server)
	EnvServeFail   = "T_SERVE_FAIL"    // with EnvServe: the worker's Serve returns an error once the file <this>/<pid> exists
	EnvMaxRequests = "T_MAXREQ"        // Config.MaxRequests
	EnvMaxReqJit   = "T_MAXREQ_JITTER" // Config.MaxRequestsJitter
	EnvRequestTO   = "T_REQUEST_TO"    // Config.Server.RequestTimeout
	EnvHung        = "T_HUNG"          // Config.HungRequests
	EnvKeepAll     = "T_KEEPALL"       // a ShouldKill that never replaces (the default's bad-GC rule can fire under a test's load)
)

// roleAtStart is CurrentRole before Listen, for the handler to report.
var roleAtStart string

func envDur(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// Exists reports whether the file path exists ("" does not).
func Exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// Reply is what every route of [Child]'s handler answers, in JSON.
type Reply struct {
	Pid         int    `json:"pid"`
	Nonblock    bool   `json:"nonblock"`
	Role        string `json:"role"`        // CurrentRole while serving (after Listen)
	RoleAtStart string `json:"roleAtStart"` // CurrentRole before Listen
	Bytes       int    `json:"bytes"`       // body bytes read (/put)
}

// Handler is [Child]'s handler: GET / (the serving pid, whether the shared
// socket is non-blocking, the role), PUT /put (the body's length),
// /slow?ms= (answers after ms milliseconds; creates the file EnvInFlight
// names first) and /hang (never returns: a hung request).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fl, _ := unix.FcntlInt(3, unix.F_GETFL, 0) // fd 3: the shared socket
		json.NewEncoder(w).Encode(Reply{Pid: os.Getpid(), Nonblock: fl&unix.O_NONBLOCK != 0,
			Role: cluster2.CurrentRole().String(), RoleAtStart: roleAtStart})
	})
	mux.HandleFunc("PUT /put", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		json.NewEncoder(w).Encode(Reply{Pid: os.Getpid(), Bytes: len(b)})
	})
	mux.HandleFunc("/hang", func(http.ResponseWriter, *http.Request) { select {} })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		if f := os.Getenv(EnvInFlight); f != "" {
			os.WriteFile(f, nil, 0o600)
		}
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		json.NewEncoder(w).Encode(Reply{Pid: os.Getpid()})
	})
	return mux
}

// Child is main of the plain test cluster, in the master and the workers:
// [Handler] served by workers configured from the Env* variables, the
// master's lifecycle events kept for the control route /events, and the
// control server of [ControlMux] with /slots (the arena's process table),
// /events (every event's name so far) and /heartbeat-event (the arguments
// of the latest "heartbeat" emitter event, as published). Start it with
// [Start] (child name as registered in the package's TestMain).
func Child() {
	roleAtStart = cluster2.CurrentRole().String()
	if n, err := strconv.ParseUint(os.Getenv(EnvNoFile), 10, 64); err == nil && cluster2.CurrentRole() == cluster2.Master {
		lim := syscall.Rlimit{Cur: n, Max: n}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Printf("LISTEN-ERROR setrlimit: %v\n", err)
			os.Exit(3)
		}
	}
	maxHeader, _ := strconv.Atoi(os.Getenv(EnvMaxHeader))
	workers, _ := strconv.Atoi(os.Getenv(EnvWorkers))
	maxWorkers, _ := strconv.Atoi(os.Getenv(EnvMaxWorkers))
	arenaSize, _ := strconv.ParseInt(os.Getenv(EnvArenaSize), 10, 64)
	retries, _ := strconv.Atoi(os.Getenv(EnvRetries))
	memLimit, _ := strconv.Atoi(os.Getenv(EnvMemLimit))
	maxReq, _ := strconv.Atoi(os.Getenv(EnvMaxRequests))
	maxReqJitter, _ := strconv.Atoi(os.Getenv(EnvMaxReqJit))
	hung, _ := strconv.Atoi(os.Getenv(EnvHung))
	monAddr := os.Getenv(EnvMonitor)
	if monAddr == "" {
		monAddr = "127.0.0.1:0"
	}
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var evMu sync.Mutex
	var events []string
	cfg := cluster2.Config{
		Workers: workers, MaxWorkers: maxWorkers, ArenaSize: arenaSize, Addr: addr, MonitorAddr: monAddr, Version: os.Getenv(EnvVersion),
		Handler:           Handler(),
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		HeartbeatInterval: envDur(EnvHeartbeat, 200*time.Millisecond),
		NannyTolerance:    envDur(EnvNanny, -1),
		MemoryLimit:       uint64(memLimit),
		MaxRequests:       maxReq,
		MaxRequestsJitter: maxReqJitter,
		HungRequests:      hung,
		PidDir:            os.Getenv(EnvPidDir),
		ReplaceTimeout:    envDur(EnvReplaceTO, 10*time.Second),
		StopTimeout:       envDur(EnvStopTO, 10*time.Second),
		ReplaceRetries:    retries,
		Server: cluster2.ServerConfig{IdleTimeout: envDur(EnvIdle, 0), ReadHeaderTimeout: envDur(EnvHeaderTO, 0),
			BodyReadTimeout: envDur(EnvBodyTO, 0), MaxHeaderBytes: maxHeader, RequestTimeout: envDur(EnvRequestTO, 0)},
		Monitor: cluster2.MonitorConfig{AgentAddr: os.Getenv(EnvAgent), Token: os.Getenv(EnvToken)},
		ConfigureApp: func(ctx context.Context, h http.Handler) (http.Handler, error) {
			if Exists(os.Getenv(EnvConfFail)) {
				return nil, errors.New("configure told to fail")
			}
			return h, nil
		},
		WarmUp: func(ctx context.Context, addr string) error {
			if Exists(os.Getenv(EnvWarmFail)) {
				return errors.New("warm-up told to fail")
			}
			if Exists(os.Getenv(EnvWarmCrash)) {
				os.Exit(2) // a crash during warm-up
			}
			if dir := os.Getenv(monitor.ProfileDirEnv); os.Getenv(EnvProfileUp) != "" && dir != "" &&
				!Exists(monitor.ProfileSocket(dir, os.Getpid())) {
				return errors.New("the profile socket is not up at warm-up: the monitor could ask for it once the worker listens")
			}
			for Exists(os.Getenv(EnvWarmHang)) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		},
		OnEvent: func(e cluster2.Event) {
			evMu.Lock()
			events = append(events, e.Name())
			evMu.Unlock()
		},
	}
	if os.Getenv(EnvKeepAll) != "" {
		cfg.ShouldKill = func(cluster2.Heartbeat) bool { return false }
	}
	if os.Getenv(EnvNoWarmUp) != "" {
		cfg.WarmUp = nil
	}
	if os.Getenv(EnvServe) != "" {
		serveCustom(&cfg)
	}
	if os.Getenv(EnvTLS) != "" {
		cfg.NewServer = func(h http.Handler) *http.Server {
			return &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned()}}}
		}
	}
	c, err := cluster2.Listen(context.Background(), cfg)
	if err != nil {
		fmt.Printf("LISTEN-ERROR %v\n", err)
		os.Exit(3)
	}
	if !c.IsMaster() {
		if os.Getenv(EnvStuckOnStop) != "" {
			signal.Ignore(syscall.SIGTERM)
			c.Wait()
			select {} // a main that never returns
		}
		c.Wait()
		return
	}
	ctl := ControlMux(c)
	ctl.HandleFunc("/slots", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Arena().Slots())
	})
	var hbMu sync.Mutex
	var hbArgs string // the latest "heartbeat" emitter event's arguments, as published
	emitter.On("heartbeat", func(e emitter.Event) {
		hbMu.Lock()
		hbArgs = string(e.Args)
		hbMu.Unlock()
	})
	ctl.HandleFunc("/heartbeat-event", func(w http.ResponseWriter, r *http.Request) {
		hbMu.Lock()
		defer hbMu.Unlock()
		fmt.Fprint(w, hbArgs)
	})
	ctl.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		evMu.Lock()
		defer evMu.Unlock()
		json.NewEncoder(w).Encode(events)
	})
	Serve(c, ctl)
	fmt.Printf("STOPPED\n")
}

// serveCustom configures cfg to run [Handler] through Config.Serve and
// Config.Drain: an http.Server the worker does not know as one (its
// requests counted with cluster2.CountRequest). With EnvServeFail, Serve
// returns an error while its listener is open once the file named by the
// directory and the pid exists.
func serveCustom(cfg *cluster2.Config) {
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.HandleFunc("/kv", kvHandler)
	h := http.Handler(mux)
	cfg.Cache.Enabled = true
	var states sync.Map   // net.Conn → its http.ConnState
	var busy atomic.Int64 // connections with a request to come or in flight (New, Active)
	isBusy := func(s http.ConnState) int64 {
		if s == http.StateNew || s == http.StateActive {
			return 1
		}
		return 0
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.Now()
		h.ServeHTTP(w, r)
		cluster2.CountRequest(time.Since(t), false)
	}), ConnState: func(c net.Conn, s http.ConnState) { // called in order for each connection
		var prev int64
		if p, ok := states.Load(c); ok {
			prev = isBusy(p.(http.ConnState))
		}
		if s == http.StateClosed || s == http.StateHijacked {
			states.Delete(c)
		} else {
			states.Store(c, s)
		}
		busy.Add(isBusy(s) - prev)
	}}
	cfg.Handler, cfg.ConfigureApp = nil, nil
	cfg.Serve = func(ctx context.Context, ln net.Listener) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		fail := ""
		if dir := os.Getenv(EnvServeFail); dir != "" {
			fail = filepath.Join(dir, strconv.Itoa(os.Getpid()))
		}
		for {
			select {
			case err := <-errc:
				return err
			case <-time.After(20 * time.Millisecond):
				if Exists(fail) {
					return errors.New("serve told to fail")
				}
			}
		}
	}
	// http.Server.Shutdown alone is not a drain: a request it reads after it
	// began is dropped (its Serve loop returns without an answer), so an
	// accepted connection whose request was not read yet fails. First
	// keep-alives off (every response closes its connection; idle ones are
	// closed: their clients replay a GET), until no connection is new or
	// active; then Shutdown.
	cfg.Drain = func(ctx context.Context) error {
		srv.SetKeepAlivesEnabled(false)
		for busy.Load() > 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		return srv.Shutdown(ctx)
	}
}

// KV is what /kv answers (with EnvServe): the serving pid and the shared
// cache's value of the key.
type KV struct {
	Pid   int    `json:"pid"`
	Value string `json:"value"`
}

// kvHandler is /kv?k=key[&v=value] (with EnvServe): it sets the key in the
// shared cache "serve" when v is given, then answers the cache's value.
func kvHandler(w http.ResponseWriter, r *http.Request) {
	c, err := cache.Use("serve", cache.Options{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	k := r.URL.Query().Get("k")
	if v := r.URL.Query().Get("v"); v != "" {
		if _, err := c.Set(r.Context(), k, []byte(v), cache.SetOptions{}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	v, _, err := c.GetInto(nil, k)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	json.NewEncoder(w).Encode(KV{Pid: os.Getpid(), Value: string(v)})
}

// selfSigned makes a throw-away certificate for 127.0.0.1.
func selfSigned() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
