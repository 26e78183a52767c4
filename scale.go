package cluster2

import (
	"context"
	"fmt"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/status"
)

// Scaling is the elastic worker count: the target, the kept workers now and
// the ceiling (Config.MaxWorkers); see master.Scaling. /status shows it as
// the master's built-in status StatusScale.
type Scaling = master.Scaling

// StatusScale is the master's built-in status with its Scaling.
const StatusScale = status.NameScale

// Scale sets the number of workers to n and waits until the cluster has
// them, or ctx ends (the scale goes on then). Scaling up warms each new
// worker on its private address before it accepts, as a successor; scaling
// down drains the oldest workers (one still starting or paused first: they
// serve nothing): each stops
// accepting and finishes its in-flight requests within StopTimeout, never
// killed outright. See master.Master.Scale for the rules: the request waits
// behind a rolling restart's replacements; n below 1 is an error wrapping
// master.ErrScaleRange, above Config.MaxWorkers one wrapping
// master.ErrAboveCeiling; during an in-place upgrade it returns
// master.ErrUpgrading (ask again once the upgrade is done). The count
// survives rolling restarts and in-place upgrades. SIGTTIN and SIGTTOU on
// the master scale by one worker up and down, and the monitor's POST
// /debug/api/scale?workers=N calls it. Master only.
func (c *Cluster) Scale(ctx context.Context, n int) error {
	if c.m == nil {
		return ErrNotMaster
	}
	if c.upgrade.busy() {
		return fmt.Errorf("cluster2: scale: %w", master.ErrUpgrading)
	}
	return c.m.Scale(ctx, n)
}

// Scaling returns the target worker count, the kept workers now and the
// ceiling (master only; the zero value in a worker).
func (c *Cluster) Scaling() Scaling {
	if c.m == nil {
		return Scaling{}
	}
	return c.m.Scaling()
}

// busy reports whether an in-place upgrade is under way (checking the
// binary, handing over, or replacing the workers).
func (u *upgrader) busy() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.running
}
