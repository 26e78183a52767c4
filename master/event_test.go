package master_test

import (
	"testing"

	"github.com/cluster2/cluster2/master"
)

// TestEventNames pins every kind's public name to the literal the emitter
// published before events were typed: subscribers in other processes listen
// for these names.
func TestEventNames(t *testing.T) {
	const pid, slot = 4242, 3
	none := master.State(-1)
	cases := []struct {
		kind  master.Kind
		name  string
		state master.State // none: implies no state
	}{
		{master.EventForked, "worker-4242-forked", master.Forked},
		{master.EventWarming, "worker-4242-warming", master.Warming},
		{master.EventWarmUp, "worker-4242-warmup", master.Warming},
		{master.EventWarmUpFailure, "worker-4242-warmup-failure", none},
		{master.EventListening, "worker-4242-listening", master.Active},
		{master.EventPaused, "worker-4242-paused", master.Paused},
		{master.EventResumed, "worker-4242-resumed", master.Active},
		{master.EventDraining, "worker-4242-draining", none},
		{master.EventOld, "worker-4242-old", master.Old},
		{master.EventUnresponsive, "worker-4242-unresponsive", none},
		{master.EventSigTerm, "worker-4242-sigterm", none},
		{master.EventSigKill, "worker-4242-sigkill", none},
		{master.EventDied, "worker-4242-died", master.Died},
		{master.EventReplaceFailure, "worker-4242-replace-failure", none},
		{master.EventUp, "up", none},
		{master.EventDown, "down", none},
		{master.EventRollingRestart, "rolling-restart", none},
		{master.EventRespawnFailure, "respawn-failure", none},
		{master.EventMarkUp, "markUp", none},
		{master.EventMarkDown, "markDown", none},
		{master.EventAuxForked, "aux-forked", none},
		{master.EventAuxDied, "aux-died", none},
		{master.EventRollingRestartDone, "rolling-restart-done", none},
		{master.EventCheckFailed, "check-failure", none},
		{master.EventUpgrade, "upgrade", none},
		{master.EventAdopted, "worker-4242-adopted", none},
		{master.EventUpgradeDone, "upgrade-done", none},
		{master.EventScale, "scale", none},
		{master.EventRecycled, "worker-4242-recycled", none},
	}
	seen := map[master.Kind]bool{}
	for _, c := range cases {
		e := master.Event{Kind: c.kind, Slot: slot}
		if c.kind.Worker() {
			e.Pid = pid
		}
		if got := e.Name(); got != c.name {
			t.Errorf("kind %d: Name() = %q; want %q", c.kind, got, c.name)
		}
		st, ok := c.kind.State()
		if want := c.state != none; ok != want || ok && st != c.state {
			t.Errorf("%s: State() = %v, %v; want %v, %v", c.name, st, ok, c.state, want)
		}
		seen[c.kind] = true
	}
	// Every kind is in the table above: the kinds are numbered from 1 up.
	for k := master.Kind(1); k.String() != "unknown"; k++ {
		if !seen[k] {
			t.Errorf("kind %d (%s) has no expected name in this test", k, k)
		}
	}
	if got := (master.Event{}).Name(); got != "unknown" {
		t.Errorf("zero Event's Name() = %q; want unknown", got)
	}
}

// TestReasonNames pins the replacement reasons' names (the label values of
// cluster2_worker_replacements_total) and which are the master's own rules.
func TestReasonNames(t *testing.T) {
	want := []struct {
		name    string
		recycle bool
	}{{"requested", false}, {"rolling-restart", false}, {"upgrade", false}, {"should-kill", true},
		{"memory", true}, {"nanny", true}, {"max-requests", true}, {"hung-requests", true}}
	rs := master.Reasons()
	if len(rs) != len(want) {
		t.Fatalf("Reasons() = %v; want %d", rs, len(want))
	}
	for i, r := range rs {
		if r.String() != want[i].name || r.Recycle() != want[i].recycle {
			t.Errorf("reason %d: %q recycle %v; want %q, %v", r, r, r.Recycle(), want[i].name, want[i].recycle)
		}
	}
	if s := master.Reason(0).String(); s != "" {
		t.Errorf("the zero Reason is %q; want \"\"", s)
	}
}
