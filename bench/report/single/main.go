// Command single is the single-process peer of the demo in the wrk figures
// of bench/report.sh: one process, plain net/http, GOMAXPROCS = all cores,
// serving the demo's hello route and its cache-hit route (GET /cache/{key})
// with the same code as cmd/cluster2-demo's handler (copied: the demo's is
// in its package main). The cache is a cluster2 cache in a private arena, so
// that the routes do the same work; only the process model differs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listening `address`")
	flag.Parse()
	a, err := shm.Create(shm.Options{Size: 64 << 20})
	if err != nil {
		fail(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 32 << 20})
	if err != nil {
		fail(err)
	}
	c, err := sp.Use("demo", cache.Options{})
	if err != nil {
		fail(err)
	}
	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pid": pid, "hello": "hello from cluster2 worker " + strconv.Itoa(pid)})
	})
	mux.HandleFunc("GET /cache/{key}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		v, err := c.Get(r.Context(), key, func(context.Context, string) ([]byte, error) {
			return []byte("loaded by pid " + strconv.Itoa(pid)), nil
		})
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"pid": pid, "key": key, "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"value": string(v), "pid": pid, "key": key})
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	fmt.Printf("single: serving http://%s\n", *addr)
	fail(srv.ListenAndServe())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "single:", err)
	os.Exit(1)
}
