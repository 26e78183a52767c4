package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// startDemo runs the demo with args and returns its address; the demo is
// killed (SIGKILL, the whole cluster) when kill is called or the test ends.
func startDemo(t *testing.T, args string) (addr string, kill func()) {
	t.Helper()
	rundir := t.TempDir()
	cmd := xtesting.Command(t, "demo", nil, "DEMO_ARGS=-addr 127.0.0.1:0 -monitor 127.0.0.1:0 -workers 2 -rundir "+rundir+" "+args)
	out, _ := cmd.StdoutPipe()
	xtesting.Start(t, cmd)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "serving") {
		t.Fatalf("demo did not start: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	b, err := os.ReadFile(filepath.Join(rundir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st state
	json.Unmarshal(b, &st)
	return st.Addr, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }
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
	addr, kill := startDemo(t, "-data "+data)
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
	kill() // every PUT was acknowledged after its fsync

	addr, _ = startDemo(t, "-data "+data)
	if v := do(t, "GET", "http://"+addr+"/cache/greeting", ""); v["value"] != "hello" {
		t.Fatalf("after kill -9 and restart GET = %v; want hello", v)
	}
	if v := do(t, "GET", "http://"+addr+"/cache/gone", ""); !strings.HasPrefix(v["value"].(string), "loaded by pid ") {
		t.Fatalf("a deleted key came back: %v", v)
	}
}
