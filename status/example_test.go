package status_test

import (
	"context"
	"fmt"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/status"
)

// ExampleRegistry_Get registers a status and reads it. Outside a cluster (an
// emitter that is not attached) only the calling process answers; in the
// master of a cluster every worker that registered "hits" answers too.
func ExampleRegistry_Get() {
	em, _ := emitter.New(nil)
	defer em.Close()
	reg := status.New(em)
	defer reg.Close()

	hits := 0
	reg.Register("hits", func() any { return hits }, func(v any) (any, error) {
		hits = int(v.(float64)) // values arrive decoded from JSON
		return hits, nil
	})
	ctx := context.Background()
	reg.Set(ctx, "hits", 3)
	entries, _ := reg.Get(ctx, "hits")
	for _, e := range entries {
		fmt.Printf("%s = %s\n", e.Name, e.Status)
	}
	fmt.Println(reg.Names())
	// Output:
	// hits = 3
	// [hits]
}

// ExampleRegister uses the default registry, which the runtime attaches to
// the cluster in every process.
func ExampleRegister() {
	status.Register("version", func() any { return "1.2.3" }, nil)
	entries, _ := status.Get(context.Background(), "version")
	fmt.Println(string(entries[0].Status))
	// Output:
	// "1.2.3"
}
