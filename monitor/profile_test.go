package monitor_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/monitor"
)

// TestProfiles serves this process's profiles as a worker would and reaches
// them through the monitor's proxy.
func TestProfiles(t *testing.T) {
	dir, err := monitor.MakeProfileDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("profile dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	ln, err := monitor.ServeProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	me := os.Getpid()
	_, url := serve(t, newFake(me, 4242), monitor.Options{ProfileDir: dir})
	base := url + "/debug/workers/" + itoa(me) + "/pprof/"

	gz := "\x1f\x8b" // pprof protobufs are gzipped
	if body := want(t, "GET", base+"heap", 200, ""); !strings.HasPrefix(body, gz) {
		t.Errorf("heap profile starts %q", body[:min(8, len(body))])
	}
	if body := want(t, "GET", base+"profile?seconds=0.2", 200, ""); !strings.HasPrefix(body, gz) {
		t.Errorf("cpu profile starts %q", body[:min(8, len(body))])
	}
	want(t, "GET", base+"goroutine?debug=2", 200, "goroutine ")
	if body := want(t, "GET", base+"trace?seconds=0.1", 200, ""); !strings.HasPrefix(body, "go 1.") {
		t.Errorf("trace starts %q", body[:min(8, len(body))])
	}
	want(t, "GET", base, 200, "goroutine")
	want(t, "GET", base+"nope", 404, "unknown profile")
	want(t, "GET", base+"profile?seconds=1000", 400, "seconds")
	for _, bad := range []string{"NaN", "nan", "Inf", "-1", "0", "1e9", "x"} {
		want(t, "GET", base+"profile?seconds="+bad, 400, "seconds")
		want(t, "GET", base+"trace?seconds="+bad, 400, "seconds")
	}
	// A worker without a socket, an unknown pid, profiling off.
	want(t, "GET", url+"/debug/workers/4242/pprof/heap", 502, "worker 4242 profiles")
	want(t, "GET", url+"/debug/workers/999/pprof/heap", 404, "no worker")
	_, off := serve(t, newFake(me), monitor.Options{})
	want(t, "GET", off+"/debug/workers/"+itoa(me)+"/pprof/heap", 404, "profiling is off")
	// Closing the listener removes the socket.
	ln.Close()
	if _, err := os.Stat(monitor.ProfileSocket(dir, me)); !os.IsNotExist(err) {
		t.Fatalf("socket after Close: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRemoveStaleProfileDirs: the directory of a dead master's pid is
// removed; a live pid's (even another process's) and a file of the same
// name are kept.
func TestRemoveStaleProfileDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	mk := func(pid int) string {
		d := filepath.Join(tmp, fmt.Sprintf("cluster2-pprof-%d-1", pid))
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	deadDir, liveDir := mk(dead.Process.Pid), mk(live.Process.Pid)
	file := filepath.Join(tmp, fmt.Sprintf("cluster2-pprof-%d-2", dead.Process.Pid))
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	removed := monitor.RemoveStaleProfileDirs()
	if len(removed) != 1 || removed[0] != deadDir {
		t.Errorf("removed %v; want only %s", removed, deadDir)
	}
	for _, keep := range []string{liveDir, file} {
		if _, err := os.Lstat(keep); err != nil {
			t.Errorf("%s: %v; want kept", keep, err)
		}
	}
}
