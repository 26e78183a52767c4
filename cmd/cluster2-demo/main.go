// Command cluster2-demo runs a cluster2 demo cluster on embedded defaults, and
// controls a running one.
//
//	cluster2-demo [-addr :8080] [-monitor 127.0.0.1:8081] [-workers N] [-data DIR]
//	cluster2-demo status|reload|stop
//
// Routes (every response is JSON and names the serving pid):
//
//	GET    /             hello from the serving worker
//	GET    /cache/{key}  read the cache "demo" through a loader
//	PUT    /cache/{key}  store the request body
//	DELETE /cache/{key}  delete
//
// The master serves the monitor (package monitor: dashboard at /debug, ECV,
// /metrics, the JSON API) on the monitor address. The control commands find the running
// master through demo.json in the run directory (-rundir; default
// $XDG_RUNTIME_DIR/cluster2-demo or the temp dir): status prints the
// workers (from the monitor's /debug/api/workers), reload sends SIGHUP (a rolling restart), stop sends SIGTERM and
// waits until the master is gone.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	cluster2 "github.com/cluster2/cluster2"
)

func main() {
	addr := flag.String("addr", ":8080", "application `address`")
	monitor := flag.String("monitor", "127.0.0.1:8081", "monitor `address` (master only)")
	workers := flag.Int("workers", 0, "number of workers (default: number of CPUs)")
	data := flag.String("data", "", "data `directory` for persistent caches")
	rundir := flag.String("rundir", defaultRunDir(), "run `directory` (pid files, demo.json)")
	flag.Parse()
	if cmd := flag.Arg(0); cmd != "" {
		if err := control(cmd, *rundir); err != nil {
			fmt.Fprintln(os.Stderr, "cluster2-demo:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*addr, *monitor, *workers, *data, *rundir); err != nil {
		fmt.Fprintln(os.Stderr, "cluster2-demo:", err)
		os.Exit(1)
	}
}

func defaultRunDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "cluster2-demo")
	}
	return filepath.Join(os.TempDir(), "cluster2-demo-"+strconv.Itoa(os.Getuid()))
}

// state is what the master writes to demo.json for the control commands.
type state struct {
	Pid     int    `json:"pid"`
	Addr    string `json:"addr"`
	Monitor string `json:"monitor"`
}

func run(addr, monitor string, workers int, data, rundir string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: workers, Addr: addr, MonitorAddr: monitor, Handler: newApp(newCacheStore(data)),
		PidDir: filepath.Join(rundir, "pids"), Logger: log,
		Cache: cluster2.CacheConfig{Enabled: true, DataDir: data},
	})
	if err != nil {
		return err
	}
	if !c.IsMaster() {
		if err := c.Wait(); err != nil {
			log.Info("worker stopped", "err", err)
		}
		return nil
	}
	st := state{Pid: os.Getpid(), Addr: c.Addr().String()}
	if m := c.MonitorAddr(); m != nil {
		st.Monitor = m.String()
	} else {
		log.Warn("no monitor server: the status command will not work")
	}
	b, _ := json.Marshal(st)
	path := filepath.Join(rundir, "demo.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Warn("cannot write demo.json: the control commands will not find this master", "err", err)
	}
	defer os.Remove(path)
	fmt.Printf("cluster2-demo: master %d serving http://%s with %d workers; monitor http://%s/debug\n",
		os.Getpid(), st.Addr, len(c.Workers()), st.Monitor)
	return c.Wait()
}

// store is what the cache routes need from a cache (see cache.go). With a
// nil store the routes answer 501.
type store interface {
	// Get returns key's value, calling load (in exactly one process) when
	// it is absent.
	Get(ctx context.Context, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error)
	Set(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

func newApp(cache store) http.Handler {
	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pid": pid, "hello": "hello from cluster2 worker " + strconv.Itoa(pid)})
	})
	// cacheRoute answers 501 while there is no cache, and otherwise the JSON
	// of do's result, or of its error, naming the pid and the key.
	cacheRoute := func(do func(r *http.Request, key string) (map[string]any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if cache == nil {
				writeJSON(w, http.StatusNotImplemented, map[string]any{"pid": pid, "error": "cache not yet"})
				return
			}
			key := r.PathValue("key")
			out, err := do(r, key)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]any{"pid": pid, "key": key, "error": err.Error()})
				return
			}
			out["pid"], out["key"] = pid, key
			writeJSON(w, http.StatusOK, out)
		}
	}
	mux.HandleFunc("GET /cache/{key}", cacheRoute(func(r *http.Request, key string) (map[string]any, error) {
		v, err := cache.Get(r.Context(), key, func(context.Context) ([]byte, error) {
			return []byte("loaded by pid " + strconv.Itoa(pid)), nil
		})
		return map[string]any{"value": string(v)}, err
	}))
	mux.HandleFunc("PUT /cache/{key}", cacheRoute(func(r *http.Request, key string) (map[string]any, error) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			err = cache.Set(r.Context(), key, body)
		}
		return map[string]any{"stored": len(body)}, err
	}))
	mux.HandleFunc("DELETE /cache/{key}", cacheRoute(func(r *http.Request, key string) (map[string]any, error) {
		return map[string]any{"deleted": true}, cache.Delete(r.Context(), key)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"pid": pid, "error": "no route " + r.Method + " " + r.URL.Path})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// control runs a control command against the running master.
func control(cmd, rundir string) error {
	b, err := os.ReadFile(filepath.Join(rundir, "demo.json"))
	if err != nil {
		return fmt.Errorf("no running master found in %s: %w", rundir, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("demo.json: %w", err)
	}
	if !running(st.Pid) {
		return fmt.Errorf("master %d (from %s) is not running", st.Pid, rundir)
	}
	switch cmd {
	case "status":
		if st.Monitor == "" {
			return fmt.Errorf("master %d runs no monitor server: no status to show", st.Pid)
		}
		resp, err := http.Get("http://" + st.Monitor + "/debug/api/workers")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var workers json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&workers); err != nil {
			return fmt.Errorf("monitor %s: %w", st.Monitor, err)
		}
		out, _ := json.MarshalIndent(map[string]any{"master": st.Pid, "addr": st.Addr, "monitor": st.Monitor, "workers": workers}, "", "  ")
		fmt.Println(string(out))
		return nil
	case "reload":
		if err := syscall.Kill(st.Pid, syscall.SIGHUP); err != nil {
			return err
		}
		fmt.Printf("rolling restart of master %d's workers started\n", st.Pid)
		return nil
	case "stop":
		if err := syscall.Kill(st.Pid, syscall.SIGTERM); err != nil {
			return err
		}
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if !running(st.Pid) {
				fmt.Printf("master %d stopped\n", st.Pid)
				return nil
			}
		}
		return fmt.Errorf("master %d still running after 2 minutes", st.Pid)
	default:
		return fmt.Errorf("unknown command %q (want status, reload or stop)", cmd)
	}
}

// running reports whether pid is a live process: not gone, not a zombie.
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
