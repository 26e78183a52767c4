package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// demo is a demo cluster started by a test.
type demo struct {
	cmd    *exec.Cmd
	rundir string
	st     state // what the master wrote for the control commands
}

// startDemo runs the demo (two workers, loopback addresses) with extra args
// and waits until it serves.
func startDemo(t *testing.T, args string) *demo {
	t.Helper()
	return startDemoIn(t, t.TempDir(), args)
}

// startDemoIn is startDemo on run directory rundir, with extra environment
// variables.
func startDemoIn(t *testing.T, rundir, args string, env ...string) *demo {
	t.Helper()
	d := &demo{rundir: rundir}
	d.cmd = xtesting.Command(t, "demo", nil, append(env,
		"DEMO_ARGS=-addr 127.0.0.1:0 -monitor 127.0.0.1:0 -workers 2 -rundir "+d.rundir+" "+args)...)
	out, _ := d.cmd.StdoutPipe()
	xtesting.Start(t, d.cmd)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "serving") {
		t.Fatalf("demo did not start: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	b, err := os.ReadFile(filepath.Join(d.rundir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d.st); err != nil {
		t.Fatal(err)
	}
	return d
}

// kill kills the whole demo (its process group) with SIGKILL and reaps it.
func (d *demo) kill() {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	d.cmd.Wait()
}

func do(t *testing.T, method, url, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: status %d, %v, %v", method, url, resp.StatusCode, v, err)
	}
	return v
}

// The cache routes: a loader names the loading pid; a PUT is read back
// through new connections (either worker); a DELETE removes; with -data the
// value survives a kill -9 of the whole demo and a restart.
func TestDemoCacheRoutesPersist(t *testing.T) {
	data := t.TempDir()
	d := startDemo(t, "-data "+data)
	addr := d.st.Addr
	got := do(t, "GET", "http://"+addr+"/cache/fresh", "")
	if v, _ := got["value"].(string); !strings.HasPrefix(v, "loaded by pid ") {
		t.Fatalf("GET of a missing key = %v; want the loader's value", got)
	}
	do(t, "PUT", "http://"+addr+"/cache/greeting", "hello")
	for range 6 {
		if v := do(t, "GET", "http://"+addr+"/cache/greeting", ""); v["value"] != "hello" {
			t.Fatalf("GET after PUT = %v", v)
		}
	}
	do(t, "PUT", "http://"+addr+"/cache/gone", "x")
	do(t, "DELETE", "http://"+addr+"/cache/gone", "")
	d.kill() // every PUT was acknowledged after its fsync

	addr = startDemo(t, "-data "+data).st.Addr
	if v := do(t, "GET", "http://"+addr+"/cache/greeting", ""); v["value"] != "hello" {
		t.Fatalf("after kill -9 and restart GET = %v; want hello", v)
	}
	if v := do(t, "GET", "http://"+addr+"/cache/gone", ""); !strings.HasPrefix(v["value"].(string), "loaded by pid ") {
		t.Fatalf("a deleted key came back: %v", v)
	}
}
