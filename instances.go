package cluster2

import (
	"context"
	"fmt"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/status"
	"github.com/cluster2/cluster2/worker"
)

// instances are what a Cluster owns in its process: its event bus, the
// status registry on that bus, and its cache space (nil without the
// cache). Listen makes or adopts them here, before anything that uses them
// starts, and hands them to the runtimes that need them (the emitter's, the
// cache's, the monitor's, the master's statuses). It makes them the
// package-level defaults (emitter.Default, status.Default, cache.Default)
// for the user's code; no code of the runtime reads those defaults after
// this file did.
type instances struct {
	em  *emitter.Emitter
	reg *status.Registry // on em: its listeners are in place before em is attached
	sp  *cache.Space     // set by useSpace; nil without the cache
	br  *bridge.Bridge   // the bridge to Redis (bridge_wire.go); nil without Config.Cache.Redis
}

// newInstances returns the Cluster's emitter and registry. The emitter is
// the process's default one, adopted: listeners registered with emitter.On
// before Listen stay registered. The registry is the default one when it
// talks over that emitter (statuses registered before Listen stay, and are
// announced), otherwise a new one on it, made the default. Both exist before
// the emitter is attached (the emitter runtime takes them from here), so the
// master hears every status a worker registers.
func newInstances() *instances {
	em := emitter.Default()
	reg := status.Default()
	if reg.Emitter() != em {
		reg = status.New(em)
		status.SetDefault(reg)
	}
	return &instances{em: em, reg: reg}
}

// useSpace makes sp the Cluster's cache space and the process's default
// (cache.Use opens caches in it).
func (in *instances) useSpace(sp *cache.Space) {
	in.sp = sp
	cache.SetDefault(sp)
}

// release closes the bridge to Redis and clears the cache default if it is
// still the Cluster's space, which is closed with the cluster. The emitter and the registry stay the
// defaults: they outlive the cluster (the emitter is detached, as New made
// it), and a later Listen adopts them again.
func (in *instances) release() {
	if in.br != nil {
		in.br.Close() // before the space closes: its tracking writes there
	}
	if in.sp != nil && cache.Default() == in.sp {
		cache.SetDefault(nil)
	}
}

// registerMasterStatuses registers the master's built-in statuses (package
// status) in the Cluster's registry: upgrade, deathQueue, respawns and
// scale, read from m.
// With registerWorkerStatuses, the one place the runtime registers statuses.
func (in *instances) registerMasterStatuses(m *master.Master, up *upgrader) {
	in.reg.Register(StatusUpgrade, func() any { return up.status() }, nil)
	in.reg.Register(status.NameDeathQueue, func() any { return m.DeathQueue() }, nil)
	// Slots whose lost worker could not be replaced yet (the master keeps
	// trying).
	in.reg.Register(StatusRespawns, func() any { return m.Respawning() }, nil)
	in.reg.Register(StatusScale, func() any { return m.Scaling() }, nil)
}

// registerWorkerStatuses registers a worker's built-in status, status.os:
// its last heartbeat, read from its control block, as a worker.Heartbeat
// (its JSON form is the one shape of a heartbeat). Then it announces every
// status registered in this process so far: call it once the emitter is
// attached.
func (in *instances) registerWorkerStatuses(ctx context.Context, a *shm.Arena, p *shm.Proc) error {
	blocks, err := proc.Region(ctx, a)
	if err != nil {
		return fmt.Errorf("cluster2: status: %w", err)
	}
	b := &blocks[p.Slot()]
	err = in.reg.Register(status.NameOS, func() any {
		var w [proc.HeartbeatWords]uint64
		if _, ok := b.LoadHeartbeat(&w); !ok {
			return nil
		}
		return worker.HeartbeatFromWords(&w)
	}, nil)
	in.reg.Announce()
	return err
}

// Caches returns the Cluster's shared cache space in this process, the one
// the monitor shows and cache.Use opens caches in (Listen makes it the
// default), or nil when Config.Cache is not enabled.
func (c *Cluster) Caches() *cache.Space { return c.in.sp }

// Emitter returns the Cluster's event bus in this process, attached to the
// cluster: the process's default emitter when Listen ran (adopted, with the
// listeners registered on it before), and the one whose figures the
// monitor's /metrics shows.
func (c *Cluster) Emitter() *emitter.Emitter { return c.in.em }

// Status returns the Cluster's status registry in this process, on
// Emitter(): the one the monitor's /status reads and the runtime registers
// its built-in statuses in (status.os in each worker, deathQueue and
// respawns in the master). Listen makes it the default registry.
func (c *Cluster) Status() *status.Registry { return c.in.reg }
