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
)

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
	Pid      int  `json:"pid"`
	Nonblock bool `json:"nonblock"`
}

func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fl, _ := unix.FcntlInt(3, unix.F_GETFL, 0) // fd 3: the shared socket
		json.NewEncoder(w).Encode(reply{Pid: os.Getpid(), Nonblock: fl&unix.O_NONBLOCK != 0})
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
			events = append(events, e.Name)
			evMu.Unlock()
		},
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
