// Package clustertest is what tests of a whole cluster share, on both sides
// of the process boundary.
//
// The child side runs in the cluster the test started: [Child], the plain
// test cluster's main (configured by the Env* variables), [Handler], and the
// control server through which a test drives the master ([ControlMux],
// [Serve]). A package's TestMain registers its children with xtesting.Main.
//
// The parent side runs in the test: [Start] (or a [Spec]) re-executes the
// test binary as a child cluster, reads its READY line and hands back a
// [Process], through which the test talks to the control server and the
// monitor, waits for workers and states, signals the master, kills the whole
// process group with SIGKILL, and gets the cluster's output in its log when
// it fails. The process group is always killed and reaped when the test ends
// (t.Cleanup). [Run] runs a child to its end (a cluster that must refuse to
// start); [Process.Load] and [Process.PutLoad] keep clients busy while a test
// restarts, pauses or kills workers.
//
// Production code never imports this package.
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cluster2/cluster2"
)

// ControlMux returns the control routes of c's master: GET /workers (JSON),
// /pause?pid=, /resume?pid=, /replace?pid=, /scale?n= (409 with the error
// when refused), /scaling (c.Scaling, JSON),
// /rolling (a rolling restart; 500 on failure), /shutdown (graceful, in the
// background), /respawning (c.Respawning, JSON), /monitor and /agent (the
// monitor's and the agent-check responder's addresses, empty when off),
// /exhaust?leave=N (opens /dev/null until EMFILE, then gives back N
// descriptors: room for the control server, not for a spawn; answers how many
// it holds) and /free (closes them). Tests add their own routes to it.
func ControlMux(c *cluster2.Cluster) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/workers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Workers())
	})
	withPid := func(f func(r *http.Request, pid int) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			pid, _ := strconv.Atoi(r.URL.Query().Get("pid"))
			if err := f(r, pid); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
			}
		}
	}
	mux.HandleFunc("/pause", withPid(func(r *http.Request, pid int) error { return c.Pause(r.Context(), pid) }))
	mux.HandleFunc("/resume", withPid(func(r *http.Request, pid int) error { return c.Resume(r.Context(), pid) }))
	mux.HandleFunc("/replace", withPid(func(_ *http.Request, pid int) error { return c.Replace(pid) }))
	mux.HandleFunc("/scale", withPid(func(r *http.Request, _ int) error {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		return c.Scale(r.Context(), n)
	}))
	mux.HandleFunc("/scaling", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Scaling())
	})
	mux.HandleFunc("/rolling", func(w http.ResponseWriter, r *http.Request) {
		if err := c.RollingRestart(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/shutdown", func(w http.ResponseWriter, r *http.Request) {
		go c.Shutdown(context.Background())
	})
	mux.HandleFunc("/respawning", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Respawning())
	})
	mux.HandleFunc("/monitor", func(w http.ResponseWriter, r *http.Request) {
		if a := c.MonitorAddr(); a != nil {
			fmt.Fprint(w, a.String())
		}
	})
	mux.HandleFunc("/agent", func(w http.ResponseWriter, r *http.Request) {
		if a := c.AgentAddr(); a != nil {
			fmt.Fprint(w, a.String())
		}
	})
	var heldMu sync.Mutex
	var held []*os.File // descriptors /exhaust took
	mux.HandleFunc("/exhaust", func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("/free", func(w http.ResponseWriter, r *http.Request) {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, f := range held {
			f.Close()
		}
		held = nil
	})
	return mux
}

// ServeConfig is the main of a cluster a test runs from a Config of its
// own (an example's): Addr and MonitorAddr on loopback ports, 2 workers,
// 200 ms heartbeats, 20 s and 10 s replace and stop timeouts and a WARN
// logger on stderr where cfg leaves them zero; then Listen (LISTEN-ERROR and
// exit status 3 on an error) and, in a worker, Wait; in the master, [Serve]
// with [ControlMux].
func ServeConfig(cfg cluster2.Config) {
	set := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	set(&cfg.Addr, "127.0.0.1:0")
	set(&cfg.MonitorAddr, "127.0.0.1:0")
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	if cfg.ReplaceTimeout == 0 {
		cfg.ReplaceTimeout = 20 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := cluster2.Listen(context.Background(), cfg)
	switch {
	case err != nil:
		fmt.Printf("LISTEN-ERROR %v\n", err)
		os.Exit(3)
	case c.IsMaster():
		Serve(c, ControlMux(c))
	default:
		c.Wait()
	}
}

// Serve serves mux on a loopback port, prints "READY <cluster address>
// <control address> <monitor address or ->" for the test that started this
// process (see [Start]), and returns when the cluster stops. If it cannot
// listen it prints "LISTEN-ERROR" and exits with status 3.
func Serve(c *cluster2.Cluster, mux *http.ServeMux) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Printf("LISTEN-ERROR control: %v\n", err)
		os.Exit(3)
	}
	go http.Serve(l, mux)
	mon := "-"
	if a := c.MonitorAddr(); a != nil {
		mon = a.String()
	}
	fmt.Printf("READY %s %s %s\n", c.Addr(), l.Addr(), mon)
	c.Wait()
}
