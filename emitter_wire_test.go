package cluster2_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/status"
)

// childRuntime runs a real cluster (cluster2.Listen, two workers). The
// master prints what its emitter handlers receive, one line each:
// LISTENING <pid>, HEARTBEAT <pid>, GREETED <from> <to>, STATUS <n>.
func childRuntime() {
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	cfg := cluster2.Config{
		Workers: 2, Addr: "127.0.0.1:0",
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }),
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		HeartbeatInterval: 100 * time.Millisecond,
		NannyTolerance:    -1,
		NoSignals:         true,
		Monitor:           cluster2.MonitorConfig{Disabled: true},
		// A listener for each worker's listening event, registered when
		// the worker is forked: before the event can be published.
		OnEvent: func(e cluster2.Event) {
			if e.Kind == master.EventForked {
				emitter.Once(fmt.Sprintf("worker-%d-listening", e.Pid), func(ev emitter.Event) {
					le, err := emitter.Arg[cluster2.LifecycleEvent](ev, 0)
					if err == nil && le.Pid == e.Pid {
						say("LISTENING %d", e.Pid)
					}
				})
			}
		},
	}
	emitter.On("heartbeat", func(e emitter.Event) {
		var hb struct{ Pid int }
		if e.Decode(&hb) == nil {
			say("HEARTBEAT %d", hb.Pid)
		}
	})
	greeted := make(chan struct{}, 100)
	emitter.On("greeted", func(e emitter.Event) {
		var from, to int
		e.Decode(&from, &to)
		say("GREETED %d %d", from, to)
		greeted <- struct{}{}
	})
	c, err := cluster2.Listen(context.Background(), cfg)
	if err != nil {
		say("LISTEN-ERROR %v", err)
		return
	}
	me := os.Getpid()
	if !c.IsMaster() {
		emitter.On("relay", func(e emitter.Event) {
			to, _ := emitter.Arg[int](e, 0)
			emitter.To(emitter.Pid(to)).Emit("hello", me)
		})
		emitter.On("hello", func(e emitter.Event) {
			emitter.To(emitter.Master).Emit("greeted", e.From, me)
		})
		c.Wait()
		return
	}
	ws := c.Workers()
	if len(ws) != 2 {
		say("WORKERS %d", len(ws))
		return
	}
	// Worker→worker through the master; retried until the workers have
	// their listeners (they register them after their Listen returned).
	a, b := ws[0].Pid, ws[1].Pid
	for i := 0; i < 200 && len(greeted) == 0; i++ {
		emitter.To(emitter.Pid(a)).Emit("relay", b)
		time.Sleep(50 * time.Millisecond)
	}
	// status.os from both workers.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	es, err := status.Get(ctx, status.NameOS)
	cancel()
	n := 0
	for _, e := range es {
		if e.Err == nil && string(e.Status) != "null" {
			n++
		}
	}
	say("STATUS %d %v", n, err)
	select {}
}

// The emitter as cluster2.Listen wires it: a cluster started with
// cluster2.Listen publishes its lifecycle and heartbeats to On handlers in
// the master, and a worker's event reaches another worker.
func TestRuntimeWiring(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	lines := clustertest.Spec{Child: "runtime"}.Launch(t).Lines()
	listening, heartbeats := map[int]bool{}, map[int]bool{}
	greeted, statusOK := false, false
	deadline := time.After(60 * time.Second)
	for len(listening) < 2 || len(heartbeats) < 2 || !greeted || !statusOK {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the cluster's master exited; got listening %v, heartbeats %v, greeted %v, status %v",
					listening, heartbeats, greeted, statusOK)
			}
			f := strings.Fields(l)
			pid := func(i int) int { n, _ := strconv.Atoi(f[i]); return n }
			switch f[0] {
			case "LISTENING":
				listening[pid(1)] = true
			case "HEARTBEAT":
				heartbeats[pid(1)] = true
			case "GREETED":
				greeted = pid(1) != pid(2) && pid(1) != 0
			case "STATUS":
				statusOK = f[1] == "2"
				if !statusOK {
					t.Fatalf("status.os: %s; want 2 entries", l)
				}
			default:
				t.Fatalf("master: %s", l)
			}
		case <-deadline:
			t.Fatalf("after 60 s: listening %v, heartbeats %v, greeted %v, status %v", listening, heartbeats, greeted, statusOK)
		}
	}
	for pid := range listening {
		if !heartbeats[pid] {
			t.Fatalf("listening %v but heartbeats from %v", listening, heartbeats)
		}
	}
}
