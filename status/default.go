package status

import (
	"context"
	"sync/atomic"

	"github.com/cluster2/cluster2/emitter"
)

var def atomic.Pointer[Registry]

// Default returns the process's default registry, which the package-level
// functions use; the first call makes it, on emitter.Default().
// cluster2.Listen makes the Cluster's registry (Cluster.Status) on the
// Cluster's emitter, adopting this one when it talks over that emitter (so
// statuses registered before Listen stay registered and are announced), and
// makes it the default.
func Default() *Registry {
	if r := def.Load(); r != nil {
		return r
	}
	r := New(emitter.Default())
	if def.CompareAndSwap(nil, r) {
		return r
	}
	r.Close()
	return def.Load()
}

// SetDefault makes r the process's default registry. After cluster2.Listen
// it changes what the package-level functions use, not the Cluster's
// registry (the one the monitor's /status reads).
func SetDefault(r *Registry) {
	if r == nil {
		panic("status: SetDefault(nil)")
	}
	def.Store(r)
}

// Register registers a status in the default registry; see Registry.Register.
func Register(name string, view func() any, update func(any) (any, error)) error {
	return Default().Register(name, view, update)
}

// Unregister removes a status from the default registry.
func Unregister(name string) { Default().Unregister(name) }

// Names returns the default registry's names; see Registry.Names.
func Names() []string { return Default().Names() }

// Get reads a status through the default registry; see Registry.Get.
func Get(ctx context.Context, name string) ([]Entry, error) { return Default().Get(ctx, name) }

// Set updates a status through the default registry; see Registry.Set.
func Set(ctx context.Context, name string, value any) ([]Entry, error) {
	return Default().Set(ctx, name, value)
}
