package monitor_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
	"github.com/cluster2/cluster2/worker"
)

// fakeSource is a cluster in memory: the data the routes show is the
// subject of these tests, not the runtime (which has its own tests, and the
// real-process tests of the monitor live in package cluster2).
type fakeSource struct {
	mu       sync.Mutex
	workers  []master.WorkerInfo
	actions  []string
	fail     error
	caches   []monitor.CacheInfo
	watchers map[string][]func(monitor.KeyChange)
	statuses map[string]map[int]any
	metrics  []monitor.Metric
}

func newFake(pids ...int) *fakeSource {
	f := &fakeSource{watchers: map[string][]func(monitor.KeyChange){}}
	for i, pid := range pids {
		f.workers = append(f.workers, master.WorkerInfo{Pid: pid, Slot: i + 1, State: master.Active,
			Started: time.Now().Add(-time.Minute), LastHeartbeat: time.Now(),
			Heartbeat: worker.Heartbeat{Pid: pid, Slot: i + 1, Uptime: time.Minute, CPU: 12.5, RSS: 50 << 20,
				OpenConns: 3, TotalConns: 100, Requests: 40, RPS: 8, GCCycles: 2, GCPause: time.Millisecond,
				Goroutines: 17, Cycle: 5 * time.Second, At: time.Now().UnixNano()},
			Accepts: 100 + uint64(i), Requests: 40 + uint64(i)})
	}
	return f
}

func (f *fakeSource) Workers() []master.WorkerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]master.WorkerInfo{}, f.workers...)
}

func (f *fakeSource) setState(pid int, st master.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.workers {
		if f.workers[i].Pid == pid {
			f.workers[i].State = st
		}
	}
}

func (f *fakeSource) record(a string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.actions = append(f.actions, a)
	return nil
}

func (f *fakeSource) done() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.actions...)
}

func (f *fakeSource) Pause(ctx context.Context, pid int) error {
	if err := f.record(fmt.Sprint("pause ", pid)); err != nil {
		return err
	}
	f.setState(pid, master.Paused)
	return nil
}

func (f *fakeSource) Resume(ctx context.Context, pid int) error {
	if err := f.record(fmt.Sprint("resume ", pid)); err != nil {
		return err
	}
	f.setState(pid, master.Active)
	return nil
}

func (f *fakeSource) Replace(pid int) error { return f.record(fmt.Sprint("replace ", pid)) }

func (f *fakeSource) RollingRestart(ctx context.Context) error { return f.record("rolling-restart") }

func (f *fakeSource) Caches() []monitor.CacheInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]monitor.CacheInfo{}, f.caches...)
}

func (f *fakeSource) WatchCache(name string, fn func(monitor.KeyChange)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.caches {
		if c.Name == name {
			f.watchers[name] = append(f.watchers[name], fn)
			n := len(f.watchers[name]) - 1
			return func() {
				f.mu.Lock()
				f.watchers[name][n] = nil
				f.mu.Unlock()
			}, nil
		}
	}
	return nil, fmt.Errorf("cache %q: %w", name, monitor.ErrNoCache)
}

// change reports a change to every watcher of the cache; it returns how
// many watchers got it.
func (f *fakeSource) change(c monitor.KeyChange) int {
	f.mu.Lock()
	fns := append([]func(monitor.KeyChange){}, f.watchers[c.Cache]...)
	f.mu.Unlock()
	n := 0
	for _, fn := range fns {
		if fn != nil {
			fn(c)
			n++
		}
	}
	return n
}

func (f *fakeSource) Statuses(ctx context.Context) (map[string]map[int]any, error) {
	return f.statuses, nil
}

func (f *fakeSource) Metrics() []monitor.Metric { return f.metrics }
