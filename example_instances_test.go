package cluster2_test

import (
	"context"
	"log"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
)

// ExampleCluster_Caches uses the instances a Cluster owns, in any of its
// processes: its cache space (nil without Config.Cache.Enabled), its event
// bus and its status registry, the same ones the monitor shows. The
// package-level functions (cache.Use, emitter.On, status.Register) reach
// them too: Listen makes them the defaults. (Compile-only: c comes from
// Listen.)
func ExampleCluster_Caches() {
	var c *cluster2.Cluster // from Listen
	if sp := c.Caches(); sp != nil {
		users, err := sp.Use("users", cache.Options{Expire: time.Minute})
		if err != nil {
			log.Fatal(err)
		}
		users.Set(context.Background(), "42", []byte(`{"name":"Ada"}`), cache.SetOptions{})
	}
	c.Emitter().On("reload", func(e emitter.Event) {
		file, _ := emitter.Arg[string](e, 0)
		log.Printf("reload %s, asked by %d", file, e.From)
	})
	c.Status().Register("version", func() any { return "1.2.3" }, nil)
}
