// Command cluster2-demo runs a cluster2 demo cluster on embedded defaults, and
// controls a running one.
//
//	cluster2-demo [-addr :8080] [-monitor 127.0.0.1:8081] [-workers N] [-data DIR] [-token T]
//	              [-durability never|everysecond|always] [-salvage] [-redis HOST:PORT [-failsafe 30s]]
//	cluster2-demo status|reload|upgrade|stop
//	cluster2-demo scale N
//
// With -data the cache "demo" is persistent, with the durability -durability
// names (default always: a PUT answers once its value is fsynced). The log
// fixes it: a data directory written with another durability stops start-up
// (exit 1) with an error naming both; run with the directory's durability, or
// with another -data directory. A data directory whose log is damaged in the
// middle stops start-up with the file and offset; -salvage starts anyway,
// keeping what comes before the damage (what it drops is kept in
// DIR/salvaged-<time>/).
// With -redis the cache "demo" is distributed through that Redis: every demo
// on it (another host, or another port here) reads what one PUTs, and a
// write anywhere (a redis-cli SET cluster2:demo:KEY included) invalidates
// every demo's copy; while Redis is down the demos serve their kept values
// for -failsafe and refuse writes (503). -redis and -data exclude each other.
// A bad flag value prints the usage and exits with status 2.
//
// Routes (every response is JSON and names the serving pid):
//
//	GET    /             hello from the serving worker, with the build's version
//	GET    /cache/{key}  read the cache "demo" through a loader
//	HEAD   /cache/{key}  200 if the key has a value, 404 if not (no loader, nothing stored)
//	PUT    /cache/{key}  store the request body (at most 1 MiB); ?tags=a,b tags it
//	DELETE /cache/{key}  delete
//	DELETE /cache        clear the cache; ?tag=T removes the entries tagged T only
//
// Client errors are 4xx: a key over 1024 bytes 414, a body over the limit
// 413, another method 405 with Allow.
//
// The master serves the monitor (package monitor: dashboard at /debug, ECV,
// /metrics, the JSON API) on the monitor address. Its bearer token (for
// actions, profiles, the key feed, /status) is -token, or
// CLUSTER2_MONITOR_TOKEN when -token is not given (the environment is not
// visible to other users; a command line is). Without one, any local user
// controls the cluster (the monitor warns).
//
// The control commands find the running master through demo.json in the
// run directory (-rundir; default $XDG_RUNTIME_DIR/cluster2-demo or
// $TMPDIR/cluster2-demo-<uid>), which must be this user's and closed to
// others (see rundir.go): status prints the workers (from the monitor's
// /debug/api/workers), reload asks the monitor for a rolling restart and
// waits for its outcome (exit 1 with the reason when the new binary fails
// its check, or a replacement fails; SIGHUP, unanswered, when the master
// runs no monitor), upgrade asks the monitor for an in-place upgrade of the
// master to the binary on disk (the same master pid; see upgrade.go: it
// exits 0 only once every worker serves this command's version), scale N
// asks the monitor for N workers and waits until the cluster has them (new
// ones warmed up, removed ones drained; exit 1 with the master's reason
// when it refuses: above the ceiling, twice the larger of -workers and the
// number of CPUs, or below 1), stop sends
// SIGTERM and waits until the master is gone. They act only on a pid that
// is this demo's master (the executable, user and start time recorded).
package main

import (
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
	"strings"
	"syscall"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// version is the build's version, served by GET /: set it at build time
// with go build -ldflags "-X main.version=v2". A rolling restart after a
// new build was renamed over the binary's path serves the new version.
var version = "dev"

// panicInInit is a test seam: a build with -ldflags "-X
// main.panicInInit=1" panics in an init function, as a broken build would,
// so that the deploy tests can rename one over the running binary (the
// check before a rolling restart must refuse it).
var panicInInit string

func init() {
	if panicInInit != "" {
		panic("cluster2-demo: built to panic in init (main.panicInInit=" + panicInInit + ")")
	}
}

// crash makes a broken build for the upgrade tests (go build -ldflags
// "-X main.crash=..."): "start" exits at once in every process (its check
// fails), "adopt" panics in the master once it adopted the cluster in an
// in-place upgrade, "worker" fails every worker's start. Empty: none.
var crash = ""

func main() {
	if crash == "start" {
		fmt.Fprintln(os.Stderr, "cluster2-demo: built to exit at start (main.crash=start)")
		os.Exit(3)
	}
	addr := flag.String("addr", cluster2.DefaultAddr, "application `address`")
	monitor := flag.String("monitor", cluster2.DefaultMonitorAddr, "monitor `address` (master only)")
	workers := flag.Int("workers", 0, "number of workers (default: number of CPUs)")
	data := flag.String("data", "", "data `directory` for persistent caches")
	rundir := flag.String("rundir", defaultRunDir(), "run `directory` (pid files, demo.json)")
	token := flag.String("token", "", "the monitor's bearer `token` (default $CLUSTER2_MONITOR_TOKEN)")
	var pf persistFlags
	pf.register(flag.CommandLine)
	var rf redisFlags
	rf.register(flag.CommandLine)
	flag.Parse()
	if rf.addr != "" && *data != "" {
		fmt.Fprintln(os.Stderr, "cluster2-demo: -redis and -data exclude each other: a distributed cache keeps its data in Redis")
		flag.Usage()
		os.Exit(2)
	}
	if *token == "" {
		*token = os.Getenv(tokenEnv)
	}
	if cmd := flag.Arg(0); cmd != "" {
		if err := control(cmd, *rundir, *token, flag.Args()[1:]...); err != nil {
			fmt.Fprintln(os.Stderr, "cluster2-demo:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*addr, *monitor, *workers, *data, *rundir, *token, pf, rf); err != nil {
		fmt.Fprintln(os.Stderr, "cluster2-demo:", err)
		if cluster2.CurrentRole() == cluster2.Master && strings.Contains(err.Error(), fmt.Sprintf(durabilityConflict, pf.durability, "")) {
			// A worker's check (the master sees its first 96 bytes).
			fmt.Fprintln(os.Stderr, "cluster2-demo: "+errDurability.Error()+": run again with the -durability the data directory "+
				*data+" holds, or with another -data directory")
		}
		if errors.Is(err, persist.ErrCorrupt) && !pf.salvage {
			fmt.Fprintln(os.Stderr, "cluster2-demo: the data directory "+*data+" is damaged; to start anyway with what comes"+
				" before the damage (the rest is moved into "+*data+"/salvaged-<time>/), run again with -salvage")
		}
		os.Exit(1)
	}
}

func defaultRunDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "cluster2-demo")
	}
	return filepath.Join(os.TempDir(), "cluster2-demo-"+strconv.Itoa(os.Getuid()))
}

// tokenEnv is the environment variable of the monitor's token.
const tokenEnv = "CLUSTER2_MONITOR_TOKEN"

func run(addr, monitor string, workers int, data, rundir, token string, pf persistFlags, rf redisFlags) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if cluster2.CurrentRole() == cluster2.Master {
		removed, err := prepareRunDir(rundir)
		if err != nil {
			return err
		}
		for _, p := range removed {
			log.Info("removed what a dead master left", "path", p)
		}
	}
	cs := newCacheStore(data, pf.durability, rf)
	var redis cluster2.RedisConfig
	if rf.addr != "" {
		redis = cluster2.RedisConfig{Addr: rf.addr, Caches: []string{"demo"}}
	}
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: workers, Addr: addr, MonitorAddr: monitor, Handler: newApp(cs), Version: version,
		PidDir: filepath.Join(rundir, "pids"), Logger: log,
		Cache:   cluster2.CacheConfig{Enabled: true, DataDir: data, Durability: pf.durability, Salvage: pf.salvage, Redis: redis},
		Monitor: cluster2.MonitorConfig{Token: token},
		// Before a worker serves: a -durability the data directory does
		// not hold stops start-up (see demoCache.check).
		ConfigureApp: func(_ context.Context, h http.Handler) (http.Handler, error) {
			if crash == "worker" {
				return nil, errors.New("built to fail every worker (main.crash=worker)")
			}
			return h, cs.check(data)
		},
		OnEvent: func(e cluster2.Event) {
			if crash == "adopt" && e.Kind == master.EventAdopted {
				panic("built to panic once it adopted the cluster (main.crash=adopt)")
			}
		},
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
	st, err := selfState()
	if err != nil {
		log.Warn("cannot read this process's /proc entry: the control commands will refuse this master", "err", err)
	}
	st.Pid, st.Addr = os.Getpid(), c.Addr().String()
	if m := c.MonitorAddr(); m != nil {
		st.Monitor = m.String()
	} else {
		log.Warn("no monitor server: the status command will not work")
	}
	if err := writeState(rundir, st); err != nil {
		log.Warn("cannot write demo.json: the control commands will not find this master", "err", err)
	}
	defer os.Remove(filepath.Join(rundir, "demo.json"))
	fmt.Printf("cluster2-demo %s: master %d serving http://%s with %d workers; monitor http://%s/debug\n", version,
		os.Getpid(), st.Addr, len(c.Workers()), st.Monitor)
	return c.Wait()
}

// store is what the cache routes need from a cache (see cache.go). With a
// nil store the routes answer 501.
type store interface {
	// Get returns key's value, calling load (in exactly one process) when
	// it is absent.
	Get(ctx context.Context, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error)
	// Has reports whether key has a value, without loading or storing.
	Has(ctx context.Context, key string) (bool, error)
	Set(ctx context.Context, key string, value []byte, tags []string) error
	Delete(ctx context.Context, key string) error
	InvalidateTag(ctx context.Context, tag string) (int, error)
	Clear(ctx context.Context) (int, error)
}

// maxBody is the largest value a PUT stores.
const maxBody = 1 << 20

// errorCode is the status of a cache route's error: the client's errors
// are 4xx (a key too long for the cache 414, a value too large 413, a bad
// tag 400), a write refused while Redis is down 503, the rest 500.
func errorCode(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, cache.ErrKeyTooLarge):
		return http.StatusRequestURITooLong
	case errors.Is(err, cache.ErrValueTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, cache.ErrEmptyKey), errors.Is(err, cache.ErrBadTag), errors.Is(err, cache.ErrTooManyTags):
		return http.StatusBadRequest
	case errors.Is(err, cache.ErrRemoteDown): // -redis: Redis is down, the write changed nothing
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func newApp(c store) http.Handler {
	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pid": pid, "version": version, "hello": "hello from cluster2 worker " + strconv.Itoa(pid)})
	})
	// cacheRoute answers 501 while there is no cache, 414 for a key longer
	// than the cache takes (before anything runs), and otherwise the JSON
	// of do's result, or of its error, naming the pid and the key.
	cacheRoute := func(do func(r *http.Request, key string) (map[string]any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if c == nil {
				writeJSON(w, http.StatusNotImplemented, map[string]any{"pid": pid, "error": "cache not yet"})
				return
			}
			key := r.PathValue("key")
			if len(key) > cache.MaxKeyLen {
				writeJSON(w, http.StatusRequestURITooLong, map[string]any{"pid": pid,
					"error": fmt.Sprintf("key of %d bytes: the limit is %d", len(key), cache.MaxKeyLen)})
				return
			}
			out, err := do(r, key)
			if err != nil {
				writeJSON(w, errorCode(err), map[string]any{"pid": pid, "key": key, "error": err.Error()})
				return
			}
			code := http.StatusOK
			if c, ok := out["status"].(int); ok {
				code = c
				delete(out, "status")
			}
			out["pid"], out["key"] = pid, key
			writeJSON(w, code, out)
		}
	}
	mux.HandleFunc("GET /cache/{key}", cacheRoute(func(r *http.Request, key string) (map[string]any, error) {
		if r.Method == http.MethodHead {
			// HEAD looks: it never runs the loader nor stores anything.
			ok, err := c.Has(r.Context(), key)
			if err != nil || ok {
				return map[string]any{"exists": ok}, err
			}
			return map[string]any{"exists": false, "status": http.StatusNotFound}, nil
		}
		v, err := c.Get(r.Context(), key, func(context.Context) ([]byte, error) {
			return []byte("loaded by pid " + strconv.Itoa(pid)), nil
		})
		return map[string]any{"value": string(v)}, err
	}))
	mux.HandleFunc("PUT /cache/{key}", cacheRoute(func(r *http.Request, key string) (map[string]any, error) {
		if r.ContentLength > maxBody {
			return nil, &http.MaxBytesError{Limit: maxBody}
		}
		body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
		var tags []string
		if t := r.URL.Query().Get("tags"); t != "" {
			tags = strings.Split(t, ",")
		}
		if err == nil {
			err = c.Set(r.Context(), key, body, tags)
		}
		return map[string]any{"stored": len(body)}, err
	}))
	mux.HandleFunc("DELETE /cache/{key}", cacheRoute(func(r *http.Request, key string) (map[string]any, error) {
		return map[string]any{"deleted": true}, c.Delete(r.Context(), key)
	}))
	mux.HandleFunc("DELETE /cache", cacheRoute(func(r *http.Request, _ string) (map[string]any, error) {
		if tag := r.URL.Query().Get("tag"); tag != "" {
			n, err := c.InvalidateTag(r.Context(), tag)
			return map[string]any{"removed": n, "tag": tag}, err
		}
		n, err := c.Clear(r.Context())
		return map[string]any{"removed": n}, err
	}))
	// Known paths, other methods: 405 with Allow (the catch-all below
	// would answer them 404).
	notAllowed := func(allow string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"pid": pid,
				"error": "method " + r.Method + " not allowed on " + r.URL.Path + " (allowed: " + allow + ")"})
		}
	}
	mux.HandleFunc("/{$}", notAllowed("GET, HEAD"))
	mux.HandleFunc("/cache/{key}", notAllowed("GET, HEAD, PUT, DELETE"))
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

// reload asks the master's monitor for a rolling restart and waits for its
// outcome: the new binary's check (a binary that fails it replaces nothing),
// then every replacement.
func reload(st state, token string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+st.Monitor+"/debug/api/rolling-restart?wait=1", nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: reloadTimeout}).Do(req)
	if err != nil {
		return fmt.Errorf("rolling restart of master %d: %w", st.Pid, err)
	}
	defer resp.Body.Close()
	var answer struct {
		Error string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rolling restart of master %d failed (%s): %s", st.Pid, resp.Status, answer.Error)
	}
	fmt.Printf("rolling restart of master %d done: every worker replaced\n", st.Pid)
	return nil
}

// reloadTimeout bounds how long reload waits for a rolling restart.
const reloadTimeout = 30 * time.Minute

// control runs a control command against the running master, with the
// command's arguments (scale's N).
func control(cmd, rundir, token string, args ...string) error {
	st, err := readState(rundir)
	if err != nil {
		return fmt.Errorf("no running master found in %s: %w", rundir, err)
	}
	if err := verifyMaster(st); err != nil {
		return fmt.Errorf("%s/demo.json: %w", rundir, err)
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
	case "upgrade":
		return upgrade(st, token)
	case "scale":
		return scale(st, token, args)
	case "reload":
		if st.Monitor == "" { // no monitor to wait with: the signal, unanswered
			if err := syscall.Kill(st.Pid, syscall.SIGHUP); err != nil {
				return err
			}
			fmt.Printf("rolling restart of master %d's workers started (no monitor: its outcome is in the master's log)\n", st.Pid)
			return nil
		}
		return reload(st, token)
	case "stop":
		if err := syscall.Kill(st.Pid, syscall.SIGTERM); err != nil {
			return err
		}
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if !shm.ProcessAlive(st.Pid, st.Start) {
				fmt.Printf("master %d stopped\n", st.Pid)
				return nil
			}
		}
		return fmt.Errorf("master %d still running after 2 minutes", st.Pid)
	default:
		return fmt.Errorf("unknown command %q (want status, reload, upgrade, scale N or stop)", cmd)
	}
}
