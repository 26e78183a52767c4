package cluster2_test

import (
	"context"
	"errors"
	"log"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/master"
)

// ExampleCluster_Scale sets the number of workers from the master: new
// workers warm up before they accept, removed ones drain. SIGTTIN and
// SIGTTOU add and remove one. (Compile-only: it needs a running cluster.)
func ExampleCluster_Scale() {
	var c *cluster2.Cluster // from Listen, in the master
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch err := c.Scale(ctx, 8); {
	case errors.Is(err, master.ErrAboveCeiling):
		log.Printf("at most %d workers: raise Config.MaxWorkers (and restart): %v", c.Scaling().Max, err)
	case errors.Is(err, master.ErrUpgrading):
		log.Print("an in-place upgrade is under way: ask again once it is done")
	case err != nil:
		log.Printf("scale: %v", err)
	default:
		s := c.Scaling()
		log.Printf("%d workers (target %d, ceiling %d)", s.Workers, s.Target, s.Max)
	}
}
