package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cluster2/cluster2/internal/xtime"
	"github.com/cluster2/cluster2/shm"
)

// Profiling: each worker serves its own profiles on a unix socket
// (ServeProfiles) in a private directory the master made (MakeProfileDir);
// the master's monitor proxies /debug/workers/{pid}/pprof/{name} to it. The
// handlers are written on runtime/pprof and runtime/trace rather than
// net/http/pprof, whose import registers its routes on
// http.DefaultServeMux: an application serving that mux would expose them.

// ProfileDirEnv is the environment variable through which a master tells its
// workers the profiling directory.
const ProfileDirEnv = "CLUSTER2_PPROF_DIR"

// profileDirPrefix starts the name of every profiling directory, which goes
// on with the master's pid: "cluster2-pprof-<pid>-<random>".
const profileDirPrefix = "cluster2-pprof-"

// MakeProfileDir creates a private directory (mode 0700) for the workers'
// profiling sockets under os.TempDir, named after this process's pid and a
// random part ("cluster2-pprof-<pid>-<random>"). The caller removes it
// (os.RemoveAll) when the cluster stops; a master killed with SIGKILL
// cannot, and RemoveStaleProfileDirs removes it at a later start.
func MakeProfileDir() (string, error) {
	dir, err := os.MkdirTemp("", profileDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("monitor: profile dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("monitor: profile dir: %w", err)
	}
	return dir, nil
}

// RemoveStaleProfileDirs removes the profiling directories under os.TempDir
// (MakeProfileDir) that a dead master left: a killed master (SIGKILL, OOM)
// removes nothing. It removes only directories (not symlinks) owned by this
// process's user whose master pid is dead (gone, or a zombie); a live pid's
// directory, even one reused by another process, is kept. It returns the
// directories removed. Death is judged as every owner of a pid in the
// cluster judges it: shm.ProcessAlive.
func RemoveStaleProfileDirs() []string {
	tmp := os.TempDir()
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), profileDirPrefix)
		if !ok || !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || shm.ProcessAlive(pid, 0) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// ProfileSocket returns the path of worker pid's profiling socket in dir.
func ProfileSocket(dir string, pid int) string {
	return filepath.Join(dir, strconv.Itoa(pid)+".sock")
}

// ServeProfiles listens on ProfileSocket(dir, os.Getpid()) and serves
// ProfileHandler there until the returned listener is closed (which also
// removes the socket). dir must be the private directory of MakeProfileDir:
// the socket itself carries no authentication.
func ServeProfiles(dir string) (net.Listener, error) {
	path := ProfileSocket(dir, os.Getpid())
	os.Remove(path) // a stale socket of a recycled pid
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("monitor: profiles: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("monitor: profiles: %w", err)
	}
	srv := &http.Server{Handler: ProfileHandler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln, nil
}

// Bounds of the timed profiles, in seconds.
const (
	defaultCPUSeconds   = 10
	defaultTraceSeconds = 1
	maxProfileSeconds   = 120
)

// ProfileHandler serves this process's profiles in pprof's formats:
//
//	/debug/pprof/                 the list of profiles (text)
//	/debug/pprof/profile?seconds= CPU profile (default 10 s, at most 120)
//	/debug/pprof/trace?seconds=   execution trace (default 1 s, at most 120)
//	/debug/pprof/{name}?debug=    heap, goroutine, allocs, block, mutex,
//	                              threadcreate (debug=1 or 2: text)
func ProfileHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "pid %d\nprofile (CPU, ?seconds=)\ntrace (?seconds=)\n", os.Getpid())
		for _, p := range pprof.Profiles() {
			fmt.Fprintf(w, "%s %d\n", p.Name(), p.Count())
		}
	})
	mux.HandleFunc("GET /debug/pprof/profile", timed("cpu", defaultCPUSeconds, pprof.StartCPUProfile, pprof.StopCPUProfile))
	mux.HandleFunc("GET /debug/pprof/trace", timed("trace", defaultTraceSeconds, trace.Start, trace.Stop))
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		p := pprof.Lookup(name)
		if p == nil {
			http.Error(w, "unknown profile "+strconv.Quote(name), http.StatusNotFound)
			return
		}
		debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
		if name == "heap" && r.URL.Query().Get("gc") != "" {
			runtime.GC()
		}
		if debug > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			attachment(w, name)
		}
		if err := p.WriteTo(w, debug); err != nil {
			w.Header().Del("Content-Disposition")
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

// timed serves a profile that records for ?seconds= (default def) between
// start and stop.
func timed(name string, def int, start func(io.Writer) error, stop func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := seconds(r, def)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		attachment(w, name)
		if err := start(w); err != nil {
			w.Header().Del("Content-Disposition")
			http.Error(w, name+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		_ = xtime.SleepCtx(r.Context(), d) // a client gone early ends the profile early
		stop()
	}
}

func seconds(r *http.Request, def int) (time.Duration, error) {
	s := r.URL.Query().Get("seconds")
	if s == "" {
		return time.Duration(def) * time.Second, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || !(n > 0 && n <= maxProfileSeconds) { // NaN fails both
		return 0, fmt.Errorf("seconds=%q: want a number in (0, %d]", s, maxProfileSeconds)
	}
	return time.Duration(n * float64(time.Second)), nil
}

func attachment(w http.ResponseWriter, name string) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%d.pprof"`, name, os.Getpid()))
}

// serveProfile proxies /debug/workers/{pid}/pprof/{name...} to the worker's
// own socket.
func (s *Server) serveProfile(w http.ResponseWriter, r *http.Request) {
	if s.opts.ProfileDir == "" {
		writeError(w, http.StatusNotFound, errors.New("monitor: profiling is off (no ProfileDir)"))
		return
	}
	wi, ok := s.pidOf(w, r)
	if !ok {
		return
	}
	sock := ProfileSocket(s.opts.ProfileDir, wi.Pid)
	name := r.PathValue("name")
	if strings.Contains(name, "..") {
		writeError(w, http.StatusBadRequest, errors.New("monitor: bad profile name"))
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "worker"
			pr.Out.URL.Path = "/debug/pprof/" + name
			pr.Out.URL.RawPath = ""
			q := pr.Out.URL.Query()
			q.Del("access_token")
			pr.Out.URL.RawQuery = q.Encode()
			pr.Out.Header.Del("Authorization")
			pr.Out.Host = "worker"
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			DisableKeepAlives: true,
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusBadGateway, fmt.Errorf("monitor: worker %d profiles: %w", wi.Pid, err))
		},
	}
	rp.ServeHTTP(w, r)
}
