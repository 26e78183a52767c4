package cluster2_test

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
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"cluster": childCluster})
}

// Scenario variables of the "cluster" child (the test binary re-executed as
// a master, whose Listen re-executes it as workers: they inherit these).
const (
	envWorkers     = "T_WORKERS"       // number of workers
	envReplaceTO   = "T_REPLACE_TO"    // Config.ReplaceTimeout
	envStopTO      = "T_STOP_TO"       // Config.StopTimeout
	envRetries     = "T_RETRIES"       // Config.ReplaceRetries
	envWarmFail    = "T_WARMFAIL"      // WarmUp fails while this file exists
	envWarmCrash   = "T_WARMCRASH"     // the worker exits during WarmUp while this file exists
	envWarmHang    = "T_WARMHANG"      // WarmUp blocks while this file exists
	envStuckOnStop = "T_STUCK_ON_STOP" // a worker whose main never returns and ignores SIGTERM
	envHeartbeat   = "T_HEARTBEAT"     // Config.HeartbeatInterval
	envNanny       = "T_NANNY"         // Config.NannyTolerance
	envMemLimit    = "T_MEMLIMIT"      // Config.MemoryLimit
	envPidDir      = "T_PIDDIR"        // Config.PidDir
	envTLS         = "T_TLS"           // serve TLS through Config.NewServer
	envNoFile      = "T_NOFILE"        // the master's RLIMIT_NOFILE (soft and hard)
	envIdle        = "T_IDLE"          // Config.Server.IdleTimeout
	envHeaderTO    = "T_HEADER_TO"     // Config.Server.ReadHeaderTimeout
	envBodyTO      = "T_BODY_TO"       // Config.Server.BodyReadTimeout
	envMaxHeader   = "T_MAXHDR"        // Config.Server.MaxHeaderBytes
	envConfFail    = "T_CONFFAIL"      // ConfigureApp fails while this file exists
	envAgent       = "T_AGENT"         // Monitor.AgentAddr
	envNoWarmUp    = "T_NOWARMUP"      // no Config.WarmUp (the fastest start)
)

// roleAtStart is CurrentRole before Listen, for the handler to report.
var roleAtStart string

func envDur(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// reply is what every route of the test handler answers.
type reply struct {
	Pid         int    `json:"pid"`
	Nonblock    bool   `json:"nonblock"`
	Role        string `json:"role"`        // CurrentRole while serving (after Listen)
	RoleAtStart string `json:"roleAtStart"` // CurrentRole before Listen
	Bytes       int    `json:"bytes"`       // body bytes read (/put)
}

func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fl, _ := unix.FcntlInt(3, unix.F_GETFL, 0) // fd 3: the shared socket
		json.NewEncoder(w).Encode(reply{Pid: os.Getpid(), Nonblock: fl&unix.O_NONBLOCK != 0,
			Role: cluster2.CurrentRole().String(), RoleAtStart: roleAtStart})
	})
	mux.HandleFunc("PUT /put", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		json.NewEncoder(w).Encode(reply{Pid: os.Getpid(), Bytes: len(b)})
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		json.NewEncoder(w).Encode(reply{Pid: os.Getpid()})
	})
	return mux
}

// childCluster is main of the test cluster, in the master and the workers.
func childCluster() {
	roleAtStart = cluster2.CurrentRole().String()
	if n, err := strconv.ParseUint(os.Getenv(envNoFile), 10, 64); err == nil && cluster2.CurrentRole() == cluster2.Master {
		lim := syscall.Rlimit{Cur: n, Max: n}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Printf("LISTEN-ERROR setrlimit: %v\n", err)
			os.Exit(3)
		}
	}
	maxHeader, _ := strconv.Atoi(os.Getenv(envMaxHeader))
	workers, _ := strconv.Atoi(os.Getenv(envWorkers))
	retries, _ := strconv.Atoi(os.Getenv(envRetries))
	memLimit, _ := strconv.Atoi(os.Getenv(envMemLimit))
	var evMu sync.Mutex
	var events []string
	cfg := cluster2.Config{
		Workers: workers, Addr: "127.0.0.1:0", MonitorAddr: "127.0.0.1:0",
		Handler:           testHandler(),
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		HeartbeatInterval: envDur(envHeartbeat, 200*time.Millisecond),
		NannyTolerance:    envDur(envNanny, -1),
		MemoryLimit:       uint64(memLimit),
		PidDir:            os.Getenv(envPidDir),
		ReplaceTimeout:    envDur(envReplaceTO, 10*time.Second),
		StopTimeout:       envDur(envStopTO, 10*time.Second),
		ReplaceRetries:    retries,
		Server: cluster2.ServerConfig{IdleTimeout: envDur(envIdle, 0), ReadHeaderTimeout: envDur(envHeaderTO, 0),
			BodyReadTimeout: envDur(envBodyTO, 0), MaxHeaderBytes: maxHeader},
		Monitor: cluster2.MonitorConfig{AgentAddr: os.Getenv(envAgent)},
		ConfigureApp: func(ctx context.Context, h http.Handler) (http.Handler, error) {
			if exists(os.Getenv(envConfFail)) {
				return nil, errors.New("configure told to fail")
			}
			return h, nil
		},
		WarmUp: func(ctx context.Context, addr string) error {
			if exists(os.Getenv(envWarmFail)) {
				return errors.New("warm-up told to fail")
			}
			if exists(os.Getenv(envWarmCrash)) {
				os.Exit(2) // a crash during warm-up
			}
			for exists(os.Getenv(envWarmHang)) && ctx.Err() == nil {
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
	if os.Getenv(envNoWarmUp) != "" {
		cfg.WarmUp = nil
	}
	if os.Getenv(envTLS) != "" {
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
		if os.Getenv(envStuckOnStop) != "" {
			signal.Ignore(syscall.SIGTERM)
			c.Wait()
			select {} // a main that never returns
		}
		c.Wait()
		return
	}
	ctl := clustertest.ControlMux(c)
	ctl.HandleFunc("/slots", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Arena().Slots())
	})
	var heldMu sync.Mutex
	var held []*os.File // descriptors /exhaust took
	ctl.HandleFunc("/exhaust", func(w http.ResponseWriter, r *http.Request) {
		// Open /dev/null until EMFILE, then give back leave descriptors
		// (room for the control server, not for a spawn).
		leave, _ := strconv.Atoi(r.URL.Query().Get("leave"))
		heldMu.Lock()
		defer heldMu.Unlock()
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				break
			}
			held = append(held, f)
		}
		for range min(leave, len(held)) {
			held[len(held)-1].Close()
			held = held[:len(held)-1]
		}
		fmt.Fprintf(w, "%d\n", len(held))
	})
	ctl.HandleFunc("/free", func(w http.ResponseWriter, r *http.Request) {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, f := range held {
			f.Close()
		}
		held = nil
	})
	ctl.HandleFunc("/respawning", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Respawning())
	})
	ctl.HandleFunc("/agent", func(w http.ResponseWriter, r *http.Request) {
		if a := c.AgentAddr(); a != nil {
			fmt.Fprint(w, a.String())
		}
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
	ctl.HandleFunc("/monitor", func(w http.ResponseWriter, r *http.Request) {
		if a := c.MonitorAddr(); a != nil {
			fmt.Fprint(w, a.String())
		}
	})
	ctl.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		evMu.Lock()
		defer evMu.Unlock()
		json.NewEncoder(w).Encode(events)
	})
	clustertest.Serve(c, ctl)
	fmt.Printf("STOPPED\n")
}

// selfSigned makes a throw-away certificate for 127.0.0.1.
func selfSigned() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
