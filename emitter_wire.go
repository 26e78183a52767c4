package cluster2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/worker"
)

// LifecycleEvent is the argument of the lifecycle events the master
// publishes through the emitter ("worker-<pid>-listening", "up", …): decode
// it with emitter.Arg[cluster2.LifecycleEvent](e, 0).
type LifecycleEvent struct {
	Pid   int       `json:"pid,omitempty"`  // the worker, 0 for cluster events
	Slot  int       `json:"slot,omitempty"` // its slot in the arena's process table
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`

	// Workers is the new target worker count of a "scale" event.
	Workers int `json:"workers,omitempty"`
}

// emitterRuntime is the emitter's part of the master: it arms a worker's
// rings when the worker is forked, drops them when it dies, and publishes
// lifecycle events and heartbeats, in order, from its own goroutine (the
// master's OnEvent must not block; Emit may wait for room in a ring).
type emitterRuntime struct {
	em    *emitter.Emitter
	log   *slog.Logger
	hosts *bridge.Events // the backplane to other hosts on the master's bridge; nil without Config.Cache.Redis

	mu    sync.Mutex
	queue []publication
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

type publication struct {
	name    string
	targets []emitter.Target // nil: the defaults (the master and every worker)
	arg     any
}

// startEmitterMaster attaches the Cluster's emitter to the arena as the
// master, before any worker starts, and, with a bridge to Redis
// (Config.Cache.Redis), makes the bridge its backplane to the other hosts
// (bridge.ConnectEvents). It takes the instances, not an emitter:
// the Cluster's registry is on it already, so its listeners are in place
// before a worker can register a status.
func startEmitterMaster(ctx context.Context, c Config, a *shm.Arena, self *shm.Proc, in *instances) (*emitterRuntime, error) {
	em := in.em
	if err := em.SetHost(c.HostName); err != nil { // "": the default id (the emitter may have served a cluster named otherwise)
		return nil, fmt.Errorf("cluster2: emitter: %w", err)
	}
	if err := em.Attach(ctx, a, self, emitter.RoleMaster); err != nil {
		return nil, fmt.Errorf("cluster2: emitter: %w", err)
	}
	r := &emitterRuntime{em: em, log: c.Logger, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{})}
	if in.br != nil {
		// Events across hosts: emitter.AllHosts is published on the bridge's
		// events channel, and the other hosts' events come in from it.
		r.hosts = bridge.ConnectEvents(in.br, em)
	}
	go r.publish()
	return r, nil
}

// attachEmitterWorker attaches the Cluster's emitter in a worker: it waits
// until the master armed the slot, at its forked event.
func attachEmitterWorker(ctx context.Context, a *shm.Arena, p *shm.Proc, em *emitter.Emitter) error {
	if err := em.Attach(ctx, a, p, emitter.RoleWorker); err != nil {
		return fmt.Errorf("cluster2: emitter: %w", err)
	}
	return nil
}

// event is the emitter's subscription to the lifecycle (the first; see
// lifecycle): it arms a forked worker's rings and drops a dead one's, then
// queues the event's publication under its Name, with a LifecycleEvent.
func (r *emitterRuntime) event(e Event) {
	if r == nil {
		return
	}
	switch e.Kind {
	case master.EventForked:
		if err := r.em.AddWorker(context.Background(), e.Pid, e.Slot); err != nil {
			r.log.Error("cluster2: emitter: arm worker", "worker", e.Pid, "slot", e.Slot, "err", err)
		}
	case master.EventAdopted:
		if err := r.em.AdoptWorker(context.Background(), e.Pid, e.Slot); err != nil {
			r.log.Error("cluster2: emitter: adopt worker", "worker", e.Pid, "slot", e.Slot, "err", err)
		}
	case master.EventDied:
		r.em.RemoveWorker(e.Pid)
	}
	arg := LifecycleEvent{Pid: e.Pid, Slot: e.Slot, Time: e.Time, Workers: e.Workers}
	if e.Err != nil {
		arg.Error = e.Err.Error()
	}
	r.enqueue(publication{name: e.Name(), arg: arg})
	if e.Kind == master.EventOld {
		// The Node original's dismiss(pid), to the master and the worker told
		// to drain.
		r.enqueue(publication{name: "dismiss", targets: []emitter.Target{emitter.Self, emitter.Pid(e.Pid)}, arg: e.Pid})
	}
}

// attach hands the started master over: the runtime publishes until the
// master is done.
func (r *emitterRuntime) attach(m *master.Master) {
	if r == nil {
		return
	}
	go func() {
		<-m.Done()
		r.close()
	}()
}

// onHeartbeat publishes a heartbeat as the master takes it in: as in the
// seed, to the master and the worker it describes. The argument is the
// worker.Heartbeat in its JSON form (camelCase, seconds), the shape
// status.os and the monitor's /status show.
func (r *emitterRuntime) onHeartbeat(pid int, hb worker.Heartbeat) {
	if r == nil {
		return
	}
	r.enqueue(publication{name: "heartbeat", targets: []emitter.Target{emitter.Self, emitter.Pid(pid)}, arg: hb})
}

func (r *emitterRuntime) enqueue(p publication) {
	r.mu.Lock()
	r.queue = append(r.queue, p)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// publish emits queued publications in order until close.
func (r *emitterRuntime) publish() {
	defer close(r.done)
	for {
		select {
		case <-r.wake:
		case <-r.stop:
			return
		}
		r.mu.Lock()
		batch := r.queue
		r.queue = nil
		r.mu.Unlock()
		for _, p := range batch {
			var err error
			if p.targets == nil {
				err = r.em.Emit(p.name, p.arg)
			} else {
				err = r.em.To(p.targets...).Emit(p.name, p.arg)
			}
			if err != nil && !errors.Is(err, emitter.ErrClosed) {
				r.log.Warn("cluster2: emitter: publish", "event", p.name, "err", err)
			}
		}
	}
}

// close stops publishing (what is queued is dropped), disconnects the
// emitter from the other hosts and detaches the Cluster's emitter.
func (r *emitterRuntime) close() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		close(r.stop)
		<-r.done
		if r.hosts != nil {
			r.hosts.Close()
		}
		r.em.Detach()
	})
}
