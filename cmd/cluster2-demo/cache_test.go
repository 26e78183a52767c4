package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/internal/clustertest"
)

// demo is a demo cluster started by a test.
type demo struct {
	*clustertest.Process
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
// variables. The demo's first line says it serves.
func startDemoIn(t *testing.T, rundir, args string, env ...string) *demo {
	t.Helper()
	d := &demo{rundir: rundir}
	d.Process = clustertest.Spec{Child: "demo", Env: append(env,
		"DEMO_ARGS=-addr 127.0.0.1:0 -monitor 127.0.0.1:0 -workers 2 -rundir "+d.rundir+" "+args),
		Ready: func(string) bool { return true }}.Start(t)
	if !strings.Contains(d.ReadyLine, "serving") {
		t.Fatalf("demo did not start: %q", d.ReadyLine)
	}
	b, err := os.ReadFile(filepath.Join(d.rundir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d.st); err != nil {
		t.Fatal(err)
	}
	return d
}

func do(t *testing.T, method, url, body string) map[string]any {
	t.Helper()
	r := doStatus(t, method, url, body)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.code != 200 {
		t.Fatalf("%s %s: status %d, %v, %v", method, url, r.code, v, err)
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
	d.Kill() // every PUT was acknowledged after its fsync

	addr = startDemo(t, "-data "+data).st.Addr
	if v := do(t, "GET", "http://"+addr+"/cache/greeting", ""); v["value"] != "hello" {
		t.Fatalf("after kill -9 and restart GET = %v; want hello", v)
	}
	if v := do(t, "GET", "http://"+addr+"/cache/gone", ""); !strings.HasPrefix(v["value"].(string), "loaded by pid ") {
		t.Fatalf("a deleted key came back: %v", v)
	}
}
