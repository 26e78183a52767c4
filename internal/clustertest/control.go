// Package clustertest is what tests of a whole cluster share: the control
// server through which a test drives the master it started as a child
// process.
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/cluster2/cluster2"
)

// ControlMux returns the control routes of c's master: GET /workers (JSON),
// /pause?pid=, /resume?pid=, /replace?pid= (409 with the error when refused),
// /rolling (a rolling restart; 500 on failure) and /shutdown (graceful, in
// the background). Tests add their own routes to it.
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
	mux.HandleFunc("/rolling", func(w http.ResponseWriter, r *http.Request) {
		if err := c.RollingRestart(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/shutdown", func(w http.ResponseWriter, r *http.Request) {
		go c.Shutdown(context.Background())
	})
	return mux
}

// Serve serves mux on a loopback port, prints "READY <cluster address>
// <control address>" for the test that started this process, and returns
// when the cluster stops. If it cannot listen it prints "LISTEN-ERROR" and
// exits with status 3.
func Serve(c *cluster2.Cluster, mux *http.ServeMux) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Printf("LISTEN-ERROR control: %v\n", err)
		os.Exit(3)
	}
	go http.Serve(l, mux)
	fmt.Printf("READY %s %s\n", c.Addr(), l.Addr())
	c.Wait()
}
