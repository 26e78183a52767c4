package master_test

import (
	"testing"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/worker"
)

func TestDefaultShouldKill(t *testing.T) {
	base := worker.Heartbeat{Pid: 7, RPS: 50, CPU: 40, RSS: 100 << 20, GCPause: 10 * time.Millisecond}
	up := func(rps float64) worker.Heartbeat {
		h := base
		h.RPS, h.CPU, h.RSS, h.GCPause = rps, 60, 150<<20, 20*time.Millisecond
		return h
	}
	for _, tt := range []struct {
		name string
		seq  []worker.Heartbeat // judged in order; want is for the last
		want bool
	}{
		{"50→40 with cpu, memory and GC pause all up", []worker.Heartbeat{base, up(40)}, true},
		{"50→48 with all up: within 10%", []worker.Heartbeat{base, up(48)}, false},
		{"50→45 exactly 10% below: not more than 10%", []worker.Heartbeat{base, up(45)}, false},
		{"first sample only sets the peak", []worker.Heartbeat{up(40)}, false},
		{"≤ 2 req/s is not judged", []worker.Heartbeat{base, up(2)}, false},
		{"50→40 but cpu not up", []worker.Heartbeat{base, func() worker.Heartbeat { h := up(40); h.CPU = 30; return h }()}, false},
		{"50→40 but memory not up", []worker.Heartbeat{base, func() worker.Heartbeat { h := up(40); h.RSS = base.RSS; return h }()}, false},
		{"50→40 but GC pause not up", []worker.Heartbeat{base, func() worker.Heartbeat { h := up(40); h.GCPause = 5 * time.Millisecond; return h }()}, false},
		{"a new peak raises the bar", []worker.Heartbeat{base, up(60), up(50)}, false},
		{"old by uptime", []worker.Heartbeat{{Pid: 8, Uptime: 73 * time.Hour}}, true},
	} {
		kill := master.DefaultShouldKill(72 * time.Hour)
		var got bool
		for _, h := range tt.seq {
			got = kill(h)
		}
		if got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestDefaultShouldKillPeaksPerWorker(t *testing.T) {
	kill := master.DefaultShouldKill(0)
	a := worker.Heartbeat{Pid: 1, RPS: 50, CPU: 10, RSS: 10, GCPause: 1}
	b := worker.Heartbeat{Pid: 2, RPS: 40, CPU: 20, RSS: 20, GCPause: 2}
	kill(a)
	if kill(b) {
		t.Fatalf("worker 2 judged against worker 1's peak")
	}
	if kill(worker.Heartbeat{Pid: 3, Uptime: 1000 * time.Hour}) {
		t.Fatalf("maxAge 0 must mean never old")
	}
}

func TestStateText(t *testing.T) {
	for s := master.Forked; s <= master.Died; s++ {
		b, _ := s.MarshalText()
		var got master.State
		if err := got.UnmarshalText(b); err != nil || got != s {
			t.Fatalf("%v: round trip gave %v, %v", s, got, err)
		}
	}
	var s master.State
	if err := s.UnmarshalText([]byte("zombie")); err == nil {
		t.Fatalf("UnmarshalText(zombie) = nil; want an error")
	}
}
