package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// buildDemoCrash builds the demo with main.version and main.crash set.
func buildDemoCrash(t *testing.T, version, crash, path string) {
	t.Helper()
	buildDemo(t, version, path+".tmp") // the skips, once
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+version+" -X main.crash="+crash, "-o", path, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s (crash %s): %v\n%s", version, crash, err, out)
	}
	os.Remove(path + ".tmp")
}

// startPuts PUTs the key put-<n> through kept-alive connections until the
// returned func is called, which fails the test if any PUT failed, and
// returns the keys stored.
func startPuts(addr string) func(t *testing.T) []string {
	var failed atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	var keys []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("put-%d", i)
			req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/cache/"+key, strings.NewReader("v-"+key))
			resp, err := c.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("PUT %s: status %d", key, resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				mu.Lock()
				keys = append(keys, key)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func(t *testing.T) []string {
		t.Helper()
		close(stop)
		<-done
		if n := failed.Load(); n != 0 {
			t.Errorf("%d PUTs failed; first: %v", n, firstErr.Load())
		}
		return keys
	}
}

// cached reports whether key has a value in the demo cache without loading
// it (HEAD: no loader), and GETs it.
func cached(t *testing.T, addr, key string) (bool, string) {
	t.Helper()
	resp, err := http.Head("http://" + addr + "/cache/" + key)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, ""
	}
	resp, err = http.Get("http://" + addr + "/cache/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return true, string(b)
}

// runUpgrade runs bin's upgrade command against rundir.
func runUpgrade(bin, rundir string) (string, error) {
	out, err := exec.Command(bin, "-rundir", rundir, "upgrade").CombinedOutput()
	return string(out), err
}

// The in-place upgrade under load (new and kept-alive GETs, kept-alive
// PUTs to a persistent cache whose log writer runs in the master, durability
// always: each PUT answered only once on disk): v1 runs, v2 is renamed over its path, `upgrade` (v2's) exits 0;
// no request failed, the master's pid and start time are unchanged, every
// worker is new and serves v2, and every key stored before and during the
// upgrade is still in the cache (HEAD answers it without a load: warm).
// Then broken builds, each refused or sent back, with v2 serving
// throughout: one that exits at start (its check fails: nothing changes,
// the same workers serve), one whose workers all fail (the new master goes back to v2 and replaces the workers
// it had started), one that panics once it adopted the cluster (the way
// back before adoption).
func TestDemoUpgradeInPlace(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	buildDemo(t, "v1", bin)
	buildDemo(t, "v2", bin+".v2")
	cmd := filepath.Join(t.TempDir(), "demo") // the broken builds' upgrade command (a broken v3 may not run it): v2, named as the demo
	buildDemo(t, "v2", cmd)
	rundir := t.TempDir()
	data := t.TempDir() // a persistent cache, durability always: the log writer runs in the master and must resume in each image
	st, _ := runBuilt(t, bin, rundir, func(cmd *exec.Cmd) { cmd.Args = append(cmd.Args, "-data", data) })
	var old []int
	if !xtesting.Eventually(30*time.Second, func() bool { old = activeWorkers(t, st.Monitor); return len(old) == 2 }) {
		t.Fatal("the 2 workers are not active within 30 s")
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+st.Addr+"/cache/before", strings.NewReader("warm"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT before: %v %v", resp, err)
	}

	stopLoad, stopPuts := startLoad(st.Addr), startPuts(st.Addr)
	if err := os.Rename(bin+".v2", bin); err != nil {
		t.Fatal(err)
	}
	out, err := runUpgrade(bin, rundir)
	keys := stopPuts(t)
	stopLoad(t)
	if err != nil {
		t.Fatalf("upgrade to v2: %v\n%s", err, out)
	}
	t.Logf("upgrade: %s", out)
	if start, err := shm.ProcessStartTime(st.Pid); err != nil || start != st.Start {
		t.Fatalf("master %d: start time %d (%v); want the same process (%d)", st.Pid, start, err, st.Start)
	}
	now := activeWorkers(t, st.Monitor)
	if len(now) != 2 || slices.ContainsFunc(now, func(p int) bool { return slices.Contains(old, p) }) {
		t.Fatalf("workers %v after the upgrade; want 2 new ones (old %v)", now, old)
	}
	for range 6 {
		if pid, v, err := helloOf(st.Addr); err != nil || v != "v2" || !slices.Contains(now, pid) {
			t.Errorf("after the upgrade GET / = pid %d %q, %v; want v2 from one of %v", pid, v, err, now)
		}
	}
	if ok, v := cached(t, st.Addr, "before"); !ok || !strings.Contains(v, "warm") {
		t.Errorf("the key set before the upgrade: cached %v, %q; want a hit with its value", ok, v)
	}
	for _, k := range keys {
		if ok, _ := cached(t, st.Addr, k); !ok {
			t.Errorf("key %s stored during the upgrade is not in the cache", k)
		}
	}
	t.Logf("%d keys stored during the upgrade, every one a hit after it", len(keys))

	for _, broken := range []struct{ crash, want string }{
		{"start", "check"},    // refused before anything changes
		{"worker", "failed"},  // the new image goes back after adopting
		{"adopt", "adopting"}, // the new image goes back before adopting
	} {
		before := activeWorkers(t, st.Monitor)
		buildDemoCrash(t, "v3", broken.crash, bin+".v3")
		if err := os.Rename(bin+".v3", bin); err != nil {
			t.Fatal(err)
		}
		stopLoad := startLoad(st.Addr)
		out, err := runUpgrade(cmd, rundir)
		stopLoad(t)
		if err == nil || !strings.Contains(out, broken.want) {
			t.Errorf("upgrade to v3 (crash=%s): %v, %q; want a failure saying %q", broken.crash, err, out, broken.want)
		}
		t.Logf("v3 crash=%s: %s", broken.crash, strings.TrimSpace(out))
		if start, err := shm.ProcessStartTime(st.Pid); err != nil || start != st.Start {
			t.Fatalf("crash=%s: master %d: start time %d (%v); want the same process", broken.crash, st.Pid, start, err)
		}
		var after []int
		if !xtesting.Eventually(30*time.Second, func() bool { after = activeWorkers(t, st.Monitor); return len(after) == 2 }) {
			t.Fatalf("crash=%s: workers %v; want 2 active", broken.crash, after)
		}
		if broken.crash == "start" && !slices.Equal(after, before) {
			t.Errorf("crash=start: workers %v; want the same %v (nothing replaced)", after, before)
		}
		for range 6 {
			if _, v, err := helloOf(st.Addr); err != nil || v != "v2" {
				t.Errorf("crash=%s: GET / = %q, %v; want v2", broken.crash, v, err)
			}
		}
		if ok, _ := cached(t, st.Addr, "before"); !ok {
			t.Errorf("crash=%s: the key set before is gone", broken.crash)
		}
	}
}
