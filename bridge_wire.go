package cluster2

import (
	"fmt"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
)

// startBridge opens this process's bridge to Redis when Config.Cache.Redis
// names an address (else nil): in every process the client of the
// distributed caches of sp (their misses' GETs and their writes); in the
// master (track) also the host's one tracking connection, whose
// invalidations reach sp, and the pub/sub subscriptions (see package
// bridge). Redis need not be up: the bridge connects and reconnects by
// itself.
func startBridge(c Config, sp *cache.Space, track bool) (*bridge.Bridge, error) {
	rc := c.Cache.Redis
	if rc.Addr == "" {
		return nil, nil
	}
	if rc.Logger == nil {
		rc.Logger = c.Logger
	}
	b, err := bridge.Open(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster2: %w", err)
	}
	if sp != nil {
		if err := b.Attach(sp); err != nil {
			b.Close()
			return nil, fmt.Errorf("cluster2: %w", err)
		}
	}
	if track {
		var t bridge.Target
		if sp != nil {
			t = b.Target(sp)
		}
		b.Track(t)
	}
	return b, nil
}

// Bridge returns the Cluster's bridge to Redis in this process
// (Config.Cache.Redis), or nil without one. In the master it holds the
// host's tracking connection and the pub/sub subscriptions
// (Bridge.Subscribe); in every process it can Publish.
func (c *Cluster) Bridge() *bridge.Bridge { return c.in.br }
