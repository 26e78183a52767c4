package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/emitter/emittertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/status"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"worker": childWorker})
}

// childWorker registers "load" (view: its pid and a value Set can change)
// and "slow" (a view that takes 10 s), then waits for its master to go.
func childWorker() {
	em := emittertest.AttachWorker(nil)
	reg := status.New(em)
	var mu sync.Mutex
	value := 1.0
	reg.Register("load", func() any {
		mu.Lock()
		defer mu.Unlock()
		return map[string]any{"pid": os.Getpid(), "value": value}
	}, func(v any) (any, error) {
		f, ok := v.(float64)
		if !ok {
			return nil, errors.New("not a number")
		}
		mu.Lock()
		defer mu.Unlock()
		value = f
		return f * 2, nil
	})
	reg.Register("slow", func() any { time.Sleep(10 * time.Second); return 0 }, nil)
	emittertest.Ready(em) // after the registrations: the master heard them first
	emittertest.WaitMaster(em, 2*time.Minute)
}

type load struct {
	Pid   int
	Value float64
}

func newCluster(t *testing.T) (*emittertest.Master, *status.Registry) {
	m := emittertest.NewMaster(t, nil)
	reg := status.New(m.Emitter)
	t.Cleanup(reg.Close)
	m.Start(t, "worker", 1)
	m.Start(t, "worker", 2)
	m.WaitReady(t, 2)
	// Ready and the registrations are different events, handled by
	// different listeners: wait until the registrations were handled too.
	ok := xtesting.Eventually(10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		es, _ := reg.Get(ctx, "load")
		return len(es) == 2
	})
	if !ok {
		t.Fatal("the workers' registrations did not reach the master")
	}
	return m, reg
}

func TestGetSpansMasterAndWorkers(t *testing.T) {
	m, reg := newCluster(t)
	me := os.Getpid()
	reg.Register("load", func() any { return load{Pid: me, Value: 0.5} }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := reg.Get(ctx, "load")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Fatalf("got %d entries %+v; want 3", len(es), es)
	}
	var pids []int
	for _, e := range es {
		var l load
		if err := e.Decode(&l); err != nil {
			t.Fatalf("entry %+v: %v", e, err)
		}
		if l.Pid != e.Pid || e.Name != "load" {
			t.Fatalf("entry of %d says pid %d, name %q", e.Pid, l.Pid, e.Name)
		}
		pids = append(pids, e.Pid)
	}
	if want := append([]int{me}, m.Pids...); !slices.Equal(pids, want) {
		t.Fatalf("entries from %v; want %v (master first)", pids, want)
	}
	if got := reg.Names(); !slices.Equal(got, []string{"load", "slow"}) {
		t.Fatalf("Names %v; want [load slow]", got)
	}
	if _, err := reg.Get(ctx, "nope"); !errors.Is(err, status.ErrUnknown) {
		t.Fatalf("unknown name: got %v; want ErrUnknown", err)
	}
}

func TestSetRoundTripsThroughUpdate(t *testing.T) {
	_, reg := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := reg.Set(ctx, "load", 21)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("got %d entries; want 2 (the workers)", len(es))
	}
	for _, e := range es {
		var got float64
		if err := e.Decode(&got); err != nil || got != 42 {
			t.Fatalf("Set result from %d: %v, %v; want 42", e.Pid, got, err)
		}
	}
	es, _ = reg.Get(ctx, "load")
	for _, e := range es {
		var l load
		if e.Decode(&l); l.Value != 21 {
			t.Fatalf("after Set, %d has %v; want 21", e.Pid, l.Value)
		}
	}
	es, _ = reg.Set(ctx, "load", "x")
	for _, e := range es {
		if !errors.Is(e.Err, status.ErrFailed) {
			t.Fatalf("failed update from %d: %v; want ErrFailed", e.Pid, e.Err)
		}
	}
	es, _ = reg.Set(ctx, "slow", 1)
	for _, e := range es {
		if !errors.Is(e.Err, status.ErrReadOnly) {
			t.Fatalf("Set of a status without update, from %d: %v; want ErrReadOnly", e.Pid, e.Err)
		}
	}
}

func TestSlowProcessGivesAnErrorEntry(t *testing.T) {
	m, reg := newCluster(t)
	reg.Register("slow", func() any { return "fast here" }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	es, err := reg.Get(ctx, "slow")
	if err != nil {
		t.Fatalf("Get: %v; want entries", err)
	}
	if len(es) != 3 || es[0].Err != nil || string(es[0].Status) != `"fast here"` {
		t.Fatalf("got %+v; want the master's answer first, then two errors", es)
	}
	for i, e := range es[1:] {
		if e.Pid != m.Pids[i] || !errors.Is(e.Err, status.ErrTimeout) {
			t.Fatalf("entry %+v; want ErrTimeout from %d", e, m.Pids[i])
		}
	}
}

func TestWorkerSeesOnlyItselfAndDeadWorkersLeave(t *testing.T) {
	m, reg := newCluster(t)
	m.Cmds[0].Process.Kill()
	m.Cmds[0].Wait()
	m.Emitter.RemoveWorker(m.Pids[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := reg.Get(ctx, "load")
	if err != nil || len(es) != 1 || es[0].Pid != m.Pids[1] {
		t.Fatalf("got %+v, %v; want the live worker's entry only", es, err)
	}
}

func TestLocalRegistry(t *testing.T) {
	em, err := emitter.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	reg := status.New(em)
	defer reg.Close()
	if err := reg.Register("", nil, nil); !errors.Is(err, status.ErrBadName) {
		t.Fatalf("got %v; want ErrBadName", err)
	}
	reg.Register("p", func() any { panic("boom") }, nil)
	es, err := reg.Get(context.Background(), "p")
	if err != nil || len(es) != 1 || !errors.Is(es[0].Err, status.ErrFailed) {
		t.Fatalf("panicking view: %+v, %v; want one entry with ErrFailed", es, err)
	}
	b, _ := json.Marshal(es[0])
	if want := `"error":"status: view or update failed: panic: boom"`; !strings.Contains(string(b), want) {
		t.Fatalf("JSON %s; want it to contain %s", b, want)
	}
	reg.Unregister("p")
	if _, err := reg.Get(context.Background(), "p"); !errors.Is(err, status.ErrUnknown) {
		t.Fatalf("after Unregister: %v; want ErrUnknown", err)
	}
}
