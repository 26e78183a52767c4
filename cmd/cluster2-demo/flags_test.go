package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/clustertest"
)

func TestParseDurability(t *testing.T) {
	for in, want := range map[string]cache.Durability{"never": cache.Never, "everysecond": cache.EverySecond, "always": cache.Always} {
		if got, err := parseDurability(in); err != nil || got != want {
			t.Errorf("parseDurability(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Always", "every-second", "sometimes", "1"} {
		if _, err := parseDurability(in); err == nil {
			t.Errorf("parseDurability(%q): nil error; want one", in)
		}
	}
	// Registered on a flag set: the default is always, not the zero value.
	var p persistFlags
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p.register(fs)
	if err := fs.Parse(nil); err != nil || p.durability != cache.Always || p.salvage {
		t.Fatalf("defaults: %v, %v, %v; want always, no salvage", p.durability, p.salvage, err)
	}
	if err := fs.Parse([]string{"-durability", "never", "-salvage"}); err != nil || p.durability != cache.Never || !p.salvage {
		t.Fatalf("-durability never -salvage: %v, %v, %v", p.durability, p.salvage, err)
	}
	if got := newCacheStore(t.TempDir(), cache.EverySecond, redisFlags{}).opts; !got.Persist || got.Durability != cache.EverySecond {
		t.Fatalf("the demo cache's options = %+v; want persistent, every-second", got)
	}
}

// runDemo runs the demo with args until it exits (within 30 s) and returns its
// exit code and its stderr.
func runDemo(t *testing.T, args string) (int, string) {
	t.Helper()
	r := clustertest.Run(t, 30*time.Second, "demo", "DEMO_ARGS=-addr 127.0.0.1:0 -monitor 127.0.0.1:0 -workers 1 -rundir "+t.TempDir()+" "+args)
	return r.Code, r.Stderr
}

// A -durability the demo does not know is a usage error: exit status 2, the
// value and the choices named, the usage printed; nothing starts.
func TestDemoRefusesBadDurability(t *testing.T) {
	code, stderr := runDemo(t, "-data "+t.TempDir()+" -durability sometimes")
	if code != 2 || !strings.Contains(stderr, `"sometimes" is not a durability`) ||
		!strings.Contains(stderr, "never, everysecond or always") || !strings.Contains(stderr, "-salvage") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 2 and a usage error naming the value and the choices", code, stderr)
	}
}

// -durability reaches the cache: a data directory written with -durability
// never defines the cache "demo" with it. A restart that asks another
// durability does not start (exit 1) and says why, naming both values and
// the way out (no cluster that starts and then refuses every PUT); one with
// the same flag serves the value.
func TestDemoDurabilityFlag(t *testing.T) {
	data := t.TempDir()
	d := startDemo(t, "-data "+data+" -durability never")
	do(t, "PUT", "http://"+d.st.Addr+"/cache/k", "v")
	stopDemo(t, d)

	code, stderr := runDemo(t, "-data "+data+" -durability always")
	if code != 1 || !strings.Contains(stderr, `-durability always, but the data directory holds "demo" with never`) ||
		!strings.Contains(stderr, "run again with the -durability the data directory "+data+" holds, or with another -data directory") {
		t.Fatalf("-durability always over a never cache: exit %d, stderr:\n%s\nwant 1 and the conflict named at start", code, stderr)
	}

	d = startDemo(t, "-data "+data+" -durability never")
	if v := do(t, "GET", "http://"+d.st.Addr+"/cache/k", ""); v["value"] != "v" {
		t.Fatalf("GET after a restart with -durability never = %v; want v", v)
	}
	if got := doStatus(t, "PUT", "http://"+d.st.Addr+"/cache/k2", "v"); got.code != 200 {
		t.Fatalf("PUT after a restart with -durability never: %d %s; want 200", got.code, got.body)
	}
}

// A log damaged in the middle stops the demo (exit 1) with the place of the
// damage and the demo's own way out, -salvage; with -salvage it starts with
// what came before the damage.
func TestDemoSalvageFlag(t *testing.T) {
	data := t.TempDir()
	d := startDemo(t, "-data "+data)
	for _, k := range []string{"a", "b", "c"} {
		do(t, "PUT", "http://"+d.st.Addr+"/cache/"+k, "value of "+k)
	}
	d.Kill() // Always: every PUT was fsynced

	// Damage the record of b (one byte of its value); c stays valid after it.
	segs, _ := filepath.Glob(filepath.Join(data, "wal", "0*"))
	if len(segs) != 1 {
		t.Fatalf("segments %v; want one", segs)
	}
	seg, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	damaged := false
	for off := 0; off < len(seg) && seg[off] != 0; {
		n, w := binary.Uvarint(seg[off:])
		rec := seg[off+w : off+w+int(n)]
		if i := bytes.Index(rec, []byte("value of b")); i >= 0 {
			rec[i] ^= 0xff
			damaged = true
		}
		off += w + int(n)
	}
	if !damaged {
		t.Fatal("no record of b in the log")
	}
	if err := os.WriteFile(segs[0], seg, 0o600); err != nil {
		t.Fatal(err)
	}

	code, stderr := runDemo(t, "-data "+data)
	if code != 1 || !strings.Contains(stderr, "corrupt "+segs[0]+" at offset") || !strings.Contains(stderr, "run again with -salvage") {
		t.Fatalf("start on a damaged log: exit %d, stderr:\n%s\nwant 1, the file and offset, and the -salvage hint", code, stderr)
	}

	d = startDemo(t, "-data "+data+" -salvage")
	if kept, _ := filepath.Glob(filepath.Join(data, "salvaged-*")); len(kept) == 0 {
		t.Errorf("no %s/salvaged-*: what -salvage dropped must be kept", data)
	}
	if v := do(t, "GET", "http://"+d.st.Addr+"/cache/a", ""); v["value"] != "value of a" {
		t.Fatalf("after salvage GET a = %v; want the value before the damage", v)
	}
	for _, k := range []string{"b", "c"} {
		if v := do(t, "GET", "http://"+d.st.Addr+"/cache/"+k, ""); !strings.HasPrefix(v["value"].(string), "loaded by pid ") {
			t.Fatalf("after salvage GET %s = %v; want it dropped with the damage", k, v)
		}
	}
}

// stopDemo stops the demo with its stop command and waits for its exit.
func stopDemo(t *testing.T, d *demo) {
	t.Helper()
	if err := control("stop", d.rundir, ""); err != nil {
		t.Fatal(err)
	}
	if !d.WaitExit(30 * time.Second) {
		t.Fatal("demo still running 30 s after stop")
	}
	if d.ExitCode() != 0 {
		t.Fatalf("demo exit: %v", d.Cmd.ProcessState)
	}
}

type response struct {
	code int
	body string
}

// doStatus is do for a request that may fail: it returns the status and body.
func doStatus(t *testing.T, method, url, body string) response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b)}
}
