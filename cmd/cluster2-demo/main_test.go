package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"demo": func() {
		// The master and its workers all run the demo's main with its flags.
		os.Args = append([]string{"cluster2-demo"}, strings.Fields(os.Getenv("DEMO_ARGS"))...)
		main()
	}})
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s: not JSON: %v", url, err)
	}
	return v
}

func TestDemoServesAndIsControlled(t *testing.T) {
	d := startDemo(t, "")
	rundir, st := d.rundir, d.st

	hello := getJSON(t, "http://"+st.Addr+"/")
	if hello["pid"] == nil || hello["version"] != "dev" || !strings.Contains(hello["hello"].(string), "hello") {
		t.Errorf("GET / = %v; want a hello naming the pid and version dev", hello)
	}
	if c := getJSON(t, "http://"+st.Addr+"/cache/k"); c["pid"] == nil {
		t.Errorf("GET /cache/k = %v; want JSON naming the pid", c)
	}
	resp, err := http.Get("http://" + st.Monitor + "/debug/api/workers")
	if err != nil {
		t.Fatal(err)
	}
	var ws []any
	json.NewDecoder(resp.Body).Decode(&ws)
	resp.Body.Close()
	if len(ws) != 2 {
		t.Fatalf("monitor's workers = %v; want 2", ws)
	}
	if err := control("status", rundir, ""); err != nil {
		t.Fatalf("status: %v", err)
	}
	if err := control("reload", rundir, ""); err != nil {
		t.Fatal(err)
	}
	// The harness reaps the master: stop waits until it is gone.
	if err := control("stop", rundir, ""); err != nil {
		t.Fatal(err)
	}
	if !d.WaitExit(30 * time.Second) {
		t.Fatalf("demo still running after stop")
	}
	if d.ExitCode() != 0 {
		t.Errorf("demo exit: %v; want 0", d.Cmd.ProcessState)
	}
	if err := control("status", rundir, ""); err == nil {
		t.Errorf("status after stop: nil error; want no running master")
	}
}
