package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// BenchmarkUpgrade measures a deploy of a new build under wrk's load (issue
// 15): the demo (cmd/cluster2-demo, 2 workers) built twice, v1 and v2, runs
// from one path; each deploy renames the other build over that path
// (v1→v2→v1…) and deploys it, while wrk (2 threads, 32 keep-alive
// connections, GET / on loopback) runs from 250 ms before the action to
// 250 ms after every worker serves the new build. Each iteration deploys
// twice on the same cluster, one way then the other, so that the peers
// share the machine's state round by round:
//
//   - upgrade: the monitor's upgrade action (POST /debug/api/upgrade): the
//     master execs the new build with its pid, the new image adopts the
//     workers and replaces them. upgrade-ms is the upgrade status's
//     Started → Ended (/status "upgrade": checking the binary, the exec,
//     the adoption, the replacements); exec-adopt-ms the gap between the
//     log lines "executing the new image" and "cluster adopted" (the
//     master's clock, millisecond resolution); upgrade-to-exec-ms is
//     Started → the exec (the check of the new binary and the hold),
//     upgrade-replace-ms "cluster adopted" → "in-place upgrade done" (the
//     replacements).
//   - rolling: SIGHUP, which replaces every worker with the binary on disk;
//     rolling-ms is the events "rolling-restart" → "rolling-restart-done"
//     (/debug/api/events: the check, then the replacements), rolling-check-ms
//     the first event → the log line "the new binary passed its check".
//
// For each, <way>-p99-ms is wrk's p99 over the deploy's window,
// <way>-steady-p99-ms wrk's p99 over BENCH_UPGRADE_STEADY (default 2 s) just
// before it with the same load, <way>-p99/steady their ratio, <way>-req/s
// the rate during the deploy and <way>-failed wrk's non-2xx responses and
// socket errors during it (0 is the claim). upgrade/rolling and
// upgrade/rolling-p99 are the round's ratios of the deploy times and of
// the p99s. Every figure is the median of the iterations (one per -count
// with the default -benchtime; -benchtime 4x makes four rounds). After each
// deploy every worker must say it runs the new version (the monitor's
// workers: each one's build), or the benchmark fails.
//
// It skips without the go command (the demo is built by it) or wrk
// (Debian's package: apt-get install -y wrk).
func BenchmarkUpgrade(b *testing.B) {
	if os.Getenv(xtesting.EnvNoChildren) != "" {
		b.Skipf("%s is set: no child processes", xtesting.EnvNoChildren)
	}
	if _, err := exec.LookPath("go"); err != nil {
		b.Skip("no go command to build the demo with")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Skip("no wrk on PATH (Debian: apt-get install -y wrk)")
	}
	steady := 2 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BENCH_UPGRADE_STEADY")); err == nil && d > 0 {
		steady = d
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "cluster2-demo")
	builds := []string{"v1", "v2"}
	for _, v := range builds {
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", bin+"."+v, "./cmd/cluster2-demo")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build the demo %s: %v\n%s", v, err, out)
		}
	}
	next := 0 // the build that runs
	deploy := func(b *testing.B) string {
		next = 1 - next
		v := builds[next]
		if err := copyFile(bin+"."+v, bin+".new"); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			b.Fatal(err)
		}
		return v
	}
	if err := copyFile(bin+"."+builds[0], bin); err != nil {
		b.Fatal(err)
	}
	d := startDemo(b, bin, filepath.Join(dir, "run"))
	if err := d.versions(builds[0]); err != nil {
		b.Fatal(err)
	}

	// Each iteration deploys twice, the upgrade then the rolling restart:
	// the peers share the machine's state (load, frequency) round by round.
	var m upgradeFigures
	for b.Loop() {
		for _, peer := range []struct {
			name string
			run  func(d *demo) (time.Time, time.Duration, error)
		}{
			{"upgrade", (*demo).upgrade},
			{"rolling", (*demo).rollingRestart},
		} {
			st, err := runWrk(d.addr, steady, nil)
			if err != nil {
				b.Fatal(err)
			}
			v := deploy(b)
			from := len(d.logLines())
			var started time.Time
			var took time.Duration
			during, err := runWrk(d.addr, 0, func() error {
				var err error
				started, took, err = peer.run(d)
				return err
			})
			if err != nil {
				b.Fatalf("%s to %s: %v", peer.name, v, err)
			}
			if err := d.versions(v); err != nil {
				b.Fatalf("after the %s to %s: %v", peer.name, v, err)
			}
			m.add(peer.name+"-ms", ms(took))
			m.add(peer.name+"-p99-ms", during.p99)
			m.add(peer.name+"-steady-p99-ms", st.p99)
			m.add(peer.name+"-p99/steady", during.p99/st.p99)
			m.add(peer.name+"-req/s", during.rps)
			m.add(peer.name+"-failed", float64(during.failed))
			if peer.name == "upgrade" {
				at, err := readUpgradeLog(d.logLines()[from:], "executing the new image", `msg="cluster adopted"`, "in-place upgrade done")
				if err != nil {
					b.Fatal(err)
				}
				m.add("exec-adopt-ms", ms(at[1].Sub(at[0])))
				m.add("upgrade-to-exec-ms", ms(at[0].Sub(started)))
				m.add("upgrade-replace-ms", ms(at[2].Sub(at[1])))
			}
			if peer.name == "rolling" {
				if ul, err := readUpgradeLog(d.logLines()[from:], "the new binary passed its check"); err == nil {
					m.add("rolling-check-ms", ms(ul[0].Sub(started)))
				}
			}
			if during.failed > 0 {
				b.Logf("%s to %s: wrk counted %d failed requests: %s", peer.name, v, during.failed, during.errors)
			}
		}
		n := len(m.vals["upgrade-ms"]) - 1
		m.add("upgrade/rolling", m.vals["upgrade-ms"][n]/m.vals["rolling-ms"][n])
		m.add("upgrade/rolling-p99", m.vals["upgrade-p99-ms"][n]/m.vals["rolling-p99-ms"][n])
	}
	m.report(b)
}

// upgradeFigures collects each iteration's figures, by unit.
type upgradeFigures struct {
	units []string
	vals  map[string][]float64
}

func (f *upgradeFigures) add(unit string, v float64) {
	if f.vals == nil {
		f.vals = map[string][]float64{}
	}
	if _, ok := f.vals[unit]; !ok {
		f.units = append(f.units, unit)
	}
	f.vals[unit] = append(f.vals[unit], v)
}

// report reports the median of each unit.
func (f *upgradeFigures) report(b *testing.B) {
	for _, u := range f.units {
		vs := slices.Sorted(slices.Values(f.vals[u]))
		m := vs[len(vs)/2]
		if len(vs)%2 == 0 {
			m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
		b.ReportMetric(m, u)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// demo is a running cluster2-demo: its master's pid, its addresses, and its
// process group's log (stderr), line by line.
type demo struct {
	pid           int
	addr, monitor string
	mu            sync.Mutex
	lines         []string
	client        *http.Client
}

// startDemo runs the demo at bin with 2 workers in its own process group
// (killed when the benchmark ends) and returns once it wrote its state.
func startDemo(b *testing.B, bin, rundir string) *demo {
	b.Helper()
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-monitor", "127.0.0.1:0", "-workers", "2", "-rundir", rundir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	d := &demo{pid: cmd.Process.Pid, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
		}
	}()
	b.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if b.Failed() {
			b.Logf("the demo's log:\n%s", strings.Join(d.logLines(), "\n"))
		}
	})
	if !xtesting.Eventually(60*time.Second, func() bool {
		time.Sleep(50 * time.Millisecond)
		var st struct {
			Pid           int
			Addr, Monitor string
		}
		data, err := os.ReadFile(filepath.Join(rundir, "demo.json"))
		if err != nil || json.Unmarshal(data, &st) != nil || st.Pid != d.pid {
			return false
		}
		d.addr, d.monitor = st.Addr, st.Monitor
		return true
	}) {
		b.Fatalf("the demo wrote no state within 60 s:\n%s", strings.Join(d.logLines(), "\n"))
	}
	return d
}

func (d *demo) logLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.lines)
}

// getJSON GETs the monitor's path into v.
func (d *demo) getJSON(path string, v any) error {
	resp, err := d.client.Get("http://" + d.monitor + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// event is one entry of the monitor's /debug/api/events.
type event struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
}

// waitEvent polls the monitor's events (every 20 ms, up to 2 minutes) until
// one named name came after since, and returns the events.
func (d *demo) waitEvent(name string, since time.Time) ([]event, error) {
	var evs []event
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		evs = nil
		if d.getJSON("/debug/api/events", &evs) != nil {
			continue // the master is between images
		}
		if slices.ContainsFunc(evs, func(e event) bool { return e.Name == name && e.Time.After(since) }) {
			return evs, nil
		}
	}
	return evs, fmt.Errorf("no %q event within 2 minutes (last events %v)", name, evs)
}

// upgrade asks the monitor for an in-place upgrade, waits for its outcome
// and returns the upgrade status's Started and its time to Ended.
func (d *demo) upgrade() (time.Time, time.Duration, error) {
	asked := time.Now()
	resp, err := d.client.Post("http://"+d.monitor+"/debug/api/upgrade", "", nil)
	if err != nil {
		return time.Time{}, 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return time.Time{}, 0, fmt.Errorf("upgrade refused: %s: %s", resp.Status, body)
	}
	if _, err := d.waitEvent("upgrade-done", asked); err != nil {
		return time.Time{}, 0, err
	}
	var s struct {
		Upgrade map[string]cluster2.UpgradeStatus `json:"upgrade"`
	}
	if err := d.getJSON("/status", &s); err != nil {
		return time.Time{}, 0, err
	}
	u := s.Upgrade[strconv.Itoa(d.pid)]
	if u.State != "done" || u.Started.Before(asked) {
		return time.Time{}, 0, fmt.Errorf("the upgrade status after upgrade-done: %+v", u)
	}
	return u.Started, u.Ended.Sub(u.Started), nil
}

// rollingRestart sends SIGHUP to the master, waits for the rolling
// restart's end and returns when it began and its duration (events
// rolling-restart → rolling-restart-done).
func (d *demo) rollingRestart() (time.Time, time.Duration, error) {
	asked := time.Now()
	if err := syscall.Kill(d.pid, syscall.SIGHUP); err != nil {
		return time.Time{}, 0, err
	}
	evs, err := d.waitEvent("rolling-restart-done", asked)
	if err != nil {
		return time.Time{}, 0, err
	}
	var began, ended time.Time
	for _, e := range evs {
		switch {
		case e.Name == "rolling-restart" && e.Time.After(asked) && began.IsZero():
			began = e.Time
		case e.Name == "rolling-restart-done" && e.Time.After(asked) && ended.IsZero():
			ended = e.Time
		}
	}
	if began.IsZero() {
		return time.Time{}, 0, fmt.Errorf("no rolling-restart event in %v", evs)
	}
	return began, ended.Sub(began), nil
}

// versions waits (up to 10 s: an old worker may still be on its way out)
// until the cluster has 2 workers, each saying it runs build want (the
// monitor's workers: each worker's own build, from its control block).
func (d *demo) versions(want string) error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = d.workersOn(want); err == nil {
			return nil
		}
	}
	return err
}

func (d *demo) workersOn(want string) error {
	var ws []struct {
		Pid   int `json:"pid"`
		Build struct {
			Version string `json:"version"`
		} `json:"build"`
	}
	if err := d.getJSON("/debug/api/workers", &ws); err != nil {
		return err
	}
	if len(ws) != 2 {
		return fmt.Errorf("%d workers, want 2: %+v", len(ws), ws)
	}
	for _, w := range ws {
		if w.Build.Version != want {
			return fmt.Errorf("worker %d runs %q, not %q", w.Pid, w.Build.Version, want)
		}
	}
	return nil
}

// logTime is the time= field of a slog text line.
var logTime = regexp.MustCompile(`^time=(\S+) `)

// readUpgradeLog returns when the log lines said each of steps, in that
// order (the first line containing each, after the previous one's).
func readUpgradeLog(lines []string, steps ...string) ([]time.Time, error) {
	var at []time.Time
	for _, l := range lines {
		if len(at) == len(steps) {
			break
		}
		m := logTime.FindStringSubmatch(l)
		if m == nil || !strings.Contains(l, steps[len(at)]) {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return nil, err
		}
		at = append(at, t)
	}
	if len(at) < len(steps) {
		return at, fmt.Errorf("no log lines %q in that order", steps)
	}
	return at, nil
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	p99, rps float64 // ms, requests/s
	failed   int     // non-2xx responses and socket errors
	errors   string  // wrk's lines about them
}

var wrkCounts = regexp.MustCompile(`(\d+)`)

// runWrk runs wrk (2 threads, 32 connections, --latency) against addr's
// GET / for dur, or, with dur 0, from 250 ms before during until 250 ms
// after it returned. wrk runs until SIGINT (it stops then and prints its
// figures): its -d takes whole seconds only.
func runWrk(addr string, dur time.Duration, during func() error) (wrkResult, error) {
	return runWrkWith([]string{"-t2", "-c32"}, addr, dur, during)
}

// runWrkWith is runWrk with wrk's load arguments (threads, connections,
// headers) given.
func runWrkWith(load []string, addr string, dur time.Duration, during func() error) (wrkResult, error) {
	cmd := exec.Command("wrk", append(append(load, "-d10m", "--latency"), "http://"+addr+"/")...)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return wrkResult{}, err
	}
	var err error
	if during != nil {
		time.Sleep(250 * time.Millisecond)
		err = during()
		time.Sleep(250 * time.Millisecond)
	} else {
		time.Sleep(dur)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("wrk: %w\n%s", werr, out.String())
	}
	if err != nil {
		return wrkResult{}, err
	}
	var r wrkResult
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "99%":
			r.p99 = wrkMillis(f[1])
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		case strings.Contains(l, "Non-2xx") || strings.Contains(l, "Socket errors"):
			_, counts, _ := strings.Cut(l, ":")
			for _, n := range wrkCounts.FindAllString(counts, -1) {
				k, _ := strconv.Atoi(n)
				r.failed += k
			}
			r.errors += strings.TrimSpace(l) + "; "
		}
	}
	if r.p99 == 0 || r.rps == 0 {
		return r, fmt.Errorf("wrk gave no p99 or rate:\n%s", out.String())
	}
	return r, nil
}

// wrkMillis reads one of wrk's durations (850.00us, 4.20ms, 1.01s) in ms.
func wrkMillis(s string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f * u.scale
			}
		}
	}
	return 0
}
