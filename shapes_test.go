package cluster2_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// getText GETs url and returns the body of a 200.
func getText(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestOneHeartbeatShapeAndDocumentedStatuses: the "heartbeat" emitter event
// carries the heartbeat in the shape the monitor's /status shows under
// status.os (worker.Heartbeat's JSON form: camelCase, seconds), not Go field
// names and nanoseconds; and every status the runtime registers in the
// master and the workers is documented in package status's doc.
func TestOneHeartbeatShapeAndDocumentedStatuses(t *testing.T) {
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvHeartbeat+"=100ms")
	var event string
	if !xtesting.Eventually(wait, func() bool {
		event = getText(t, "http://"+tc.Ctl+"/heartbeat-event")
		return event != ""
	}) {
		t.Fatalf("no heartbeat event reached the master's listener")
	}
	var args []map[string]any
	if err := json.Unmarshal([]byte(event), &args); err != nil || len(args) != 1 {
		t.Fatalf("heartbeat event arguments %s: %v; want one object", event, err)
	}
	hb := args[0]
	pidF, ok := hb["pid"].(float64)
	if !ok {
		t.Fatalf("heartbeat event %s: no \"pid\"; want worker.Heartbeat's JSON form (camelCase, seconds)", event)
	}
	pid := int(pidF)
	if !tc.ActivePids()[pid] {
		t.Fatalf("heartbeat event %s: pid %d is not a worker", event, pid)
	}

	mon := getText(t, "http://"+tc.Ctl+"/monitor")
	var st map[string]map[string]any
	if err := json.Unmarshal([]byte(getText(t, "http://"+mon+"/status")), &st); err != nil {
		t.Fatal(err)
	}
	shown, _ := st["status.os"][strconv.Itoa(pid)].(map[string]any)
	eventKeys, statusKeys := slices.Sorted(maps.Keys(hb)), slices.Sorted(maps.Keys(shown))
	if !slices.Equal(eventKeys, statusKeys) {
		t.Fatalf("heartbeat event keys %v; /status's status.os keys %v: want one shape", eventKeys, statusKeys)
	}
	for _, k := range []string{"uptimeSeconds", "rssBytes", "cycleSeconds", "gcPauseMs", "at"} {
		if _, ok := hb[k]; !ok {
			t.Errorf("heartbeat event %s lacks %q", event, k)
		}
	}
	if c, _ := hb["cycleSeconds"].(float64); c <= 0 || c > 10 {
		t.Errorf("cycleSeconds %v; want the 0.1 s cycle in seconds", hb["cycleSeconds"])
	}

	doc, err := os.ReadFile("status/doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for name := range st {
		if name == "ecv" { // the monitor's own, not a registered status
			continue
		}
		if !strings.Contains(string(doc), `"`+name+`"`) {
			t.Errorf("status %q (registered by the runtime) is not documented in status/doc.go", name)
		}
	}
	for _, name := range []string{"status.os", "deathQueue", "respawns"} {
		if _, ok := st[name]; !ok {
			t.Errorf("/status lacks the built-in %q: %v", name, slices.Sorted(maps.Keys(st)))
		}
	}
}
