package monitor_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
)

// scaleFake is a fakeSource whose worker count can be set (ScaleSource),
// within [1, max] as the master's Scale checks.
type scaleFake struct {
	*fakeSource
	target, max int
}

func (f *scaleFake) Scale(ctx context.Context, n int) error {
	if n < 1 || n > f.max {
		return fmt.Errorf("%w: %d", master.ErrAboveCeiling, n)
	}
	if err := f.record(fmt.Sprint("scale ", n)); err != nil {
		return err
	}
	f.mu.Lock()
	f.target = n
	f.mu.Unlock()
	return nil
}

func (f *scaleFake) Scaling() master.Scaling {
	f.mu.Lock()
	defer f.mu.Unlock()
	return master.Scaling{Target: f.target, Workers: len(f.workers), Max: f.max}
}

// POST /debug/api/scale?workers=N: guarded, 200 once scaled, 409 refused,
// 400 without an integer, 404 for a source that cannot scale; the overview
// and the agent-check's weight follow the target.
func TestScaleAction(t *testing.T) {
	_, plain := serve(t, newFake(101), monitor.Options{})
	want(t, "POST", plain+"/debug/api/scale?workers=2", 404, "cannot scale")

	const token = "s3cret"
	f := &scaleFake{fakeSource: newFake(101, 102), target: 2, max: 4}
	s, url := serve(t, f, monitor.Options{Addr: "127.0.0.1:0", Token: token, AgentAddr: "127.0.0.1:0"})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	auth := []string{"Authorization", "Bearer " + token}
	want(t, "POST", url+"/debug/api/scale?workers=3", 401, "bearer token required")
	want(t, "POST", url+"/debug/api/scale?workers=3", 403, "cross-site", append(auth, "Sec-Fetch-Site", "cross-site")...)
	want(t, "GET", url+"/debug/api/scale?workers=3", 405, "", auth...)
	want(t, "POST", url+"/debug/api/scale", 400, "workers=N", auth...)
	want(t, "POST", url+"/debug/api/scale?workers=x", 400, "workers=N", auth...)
	want(t, "POST", url+"/debug/api/scale?workers=9", 409, master.ErrAboveCeiling.Error(), auth...)
	want(t, "POST", url+"/debug/api/scale?workers=4", 200, `"workers": 4`, auth...)
	if got := f.done(); len(got) != 1 || got[0] != "scale 4" {
		t.Fatalf("actions = %v; want one scale to 4", got)
	}
	want(t, "GET", url+"/debug/api/overview", 200, "\"scaling\": {\n    \"target\": 4,\n    \"workers\": 2,\n    \"max\": 4\n  }")

	// The agent's weight: 2 active workers of a target of 4.
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != "ready up 50%\n" {
		t.Fatalf("agent = %q; want ready up 50%% (2 of the target 4)", b)
	}
}
