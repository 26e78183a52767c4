package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// monitorWorkers returns the states of the workers the demo's monitor lists.
func monitorWorkers(t *testing.T, mon string) []string {
	t.Helper()
	resp, err := http.Get("http://" + mon + "/debug/api/workers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ws []struct {
		State string `json:"state"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range ws {
		out = append(out, w.State)
	}
	return out
}

// cluster2-demo scale N, run as the command (the test binary as the demo's
// main, with the command line): 2 → 3 → 1 workers, each answered once the
// cluster has them; a count above the ceiling, below 1 or not a number is
// refused with the reason (exit 1) and changes nothing.
func TestDemoScale(t *testing.T) {
	d := startDemo(t, "")
	run := func(args string) (string, error) {
		cmd := xtesting.Command(t, "demo", nil, "DEMO_ARGS=-rundir "+d.rundir+" "+args)
		cmd.Stderr = nil
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, c := range []struct {
		n    string
		want int
	}{{"3", 3}, {"1", 1}} {
		out, err := run("scale " + c.n)
		if err != nil || !strings.Contains(out, "runs "+c.n+" workers") {
			t.Fatalf("scale %s: %v: %s", c.n, err, out)
		}
		if ws := monitorWorkers(t, d.st.Monitor); strings.Join(ws, ",") != strings.TrimSuffix(strings.Repeat("active,", c.want), ",") {
			t.Fatalf("after scale %s the monitor lists %v; want %d active", c.n, ws, c.want)
		}
	}
	for arg, want := range map[string]string{"scale 5000": "ceiling is", "scale 0": "at least 1", "scale x": "not a number", "scale": "scale N"} {
		out, err := run(arg)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: %v: %q; want exit 1 naming %q", arg, err, out, want)
		}
	}
	if ws := monitorWorkers(t, d.st.Monitor); len(ws) != 1 {
		t.Errorf("after refused scales the monitor lists %v; want 1 worker", ws)
	}
}
