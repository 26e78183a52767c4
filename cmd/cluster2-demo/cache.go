package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/cache"
)

// persistFlags are the demo's persistence flags: -durability and -salvage.
type persistFlags struct {
	durability cache.Durability // never zero once registered: Always unless -durability says otherwise
	salvage    bool
}

// register defines -durability and -salvage on fs. A -durability value other
// than never, everysecond or always makes fs.Parse fail (the flag package
// then prints the error and the usage, and exits with status 2).
func (p *persistFlags) register(fs *flag.FlagSet) {
	p.durability = cache.Always
	fs.Func("durability", "`durability` of the persistent cache \"demo\" with -data: never, everysecond or always (default always);"+
		" a data directory keeps the one it was written with (another stops start-up)",
		func(s string) (err error) {
			p.durability, err = parseDurability(s)
			return err
		})
	fs.BoolVar(&p.salvage, "salvage", false,
		"with -data, start even if the log is damaged in the middle: keep what comes before the damage (the rest is moved into DIR/salvaged-<time>/)")
}

// parseDurability reads a -durability value.
func parseDurability(s string) (cache.Durability, error) {
	switch s {
	case "never":
		return cache.Never, nil
	case "everysecond":
		return cache.EverySecond, nil
	case "always":
		return cache.Always, nil
	}
	return 0, fmt.Errorf("%q is not a durability: want never, everysecond or always", s)
}

// redisFlags are the demo's Redis flags: -redis and -failsafe.
type redisFlags struct {
	addr     string        // Redis's address: the cache "demo" is distributed
	failSafe time.Duration // with -redis, the demo cache's FailSafeFor
}

// register defines -redis and -failsafe on fs.
func (r *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.addr, "redis", "", "Redis `address` (host:port): the cache \"demo\" is distributed through it, shared with every demo"+
		" on the same Redis (not with -data)")
	fs.DurationVar(&r.failSafe, "failsafe", 30*time.Second, "with -redis, how long past its deadline (or past a lost Redis connection) "+
		"the demo cache serves a kept value in place of a failing load")
}

// demoCache is the store of the cache routes: the shared cache "demo",
// persistent when the demo runs with -data, with the durability of
// -durability (default Always: a PUT answers once its value is on disk, so
// that it survives even kill -9 of the whole demo); distributed through
// Redis with -redis, with FailSafeFor -failsafe. Every process of the
// cluster opens it with the same options (they run the same flags). The
// routes share one handle, opened by the first of them (every Use makes a
// handle of its own: a request must not pay for one).
type demoCache struct {
	opts cache.Options
	h    *atomic.Pointer[cache.Cache]
}

func newCacheStore(dataDir string, d cache.Durability, rf redisFlags) demoCache {
	dc := demoCache{h: new(atomic.Pointer[cache.Cache])}
	switch {
	case dataDir != "":
		dc.opts = cache.Options{Persist: true, Durability: d}
	case rf.addr != "":
		dc.opts = cache.Options{FailSafeFor: rf.failSafe}
	}
	return dc
}

// use returns the routes' handle of "demo", opening it on first use.
func (d demoCache) use() (*cache.Cache, error) {
	if c := d.h.Load(); c != nil {
		return c, nil
	}
	c, err := cache.Use("demo", d.opts)
	if err != nil {
		return nil, err
	}
	if !d.h.CompareAndSwap(nil, c) {
		c.Close()
		return d.h.Load(), nil
	}
	return c, nil
}

// durabilityConflict starts the error check returns when the data directory
// holds the cache "demo" with another durability than -durability asks. It
// comes first, naming both values, because the master reports a worker's
// start failure cut to its first proc.ReasonMax (96) bytes.
const durabilityConflict = "-durability %v, but the data directory holds \"demo\" with %v"

// errDurability is wrapped by check's conflict error.
var errDurability = errors.New("a persistent cache keeps the durability it was created with")

// check opens the cache "demo" as the routes will, in each worker before it
// serves (Config.ConfigureApp). A persistent cache's options are fixed by
// its log: its definition is replayed before any worker starts, and the
// cache package offers no way to change them. So a -durability other than
// the one the data directory was written with, which would make every PUT
// fail, is an error naming both values and the way out; the worker does not
// start, Listen fails with it, and the demo exits 1 before serving anything.
func (d demoCache) check(dataDir string) error {
	if !d.opts.Persist {
		return nil
	}
	_, err := d.use()
	if !errors.Is(err, cache.ErrOptionsConflict) {
		return err
	}
	for _, have := range []cache.Durability{cache.Never, cache.EverySecond, cache.Always} {
		o := d.opts
		o.Durability = have
		if _, uerr := cache.Use("demo", o); uerr == nil {
			return fmt.Errorf(durabilityConflict+" (%s): %w: run with -durability %v, or with another -data directory",
				d.opts.Durability, have, dataDir, errDurability, have)
		}
	}
	return fmt.Errorf("%w: %s: %w", errDurability, dataDir, err)
}

func (d demoCache) Get(ctx context.Context, key string, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	c, err := d.use()
	if err != nil {
		return nil, err
	}
	return c.Get(ctx, key, func(ctx context.Context, _ string) ([]byte, error) { return load(ctx) })
}

func (d demoCache) Has(ctx context.Context, key string) (bool, error) {
	c, err := d.use()
	if err != nil {
		return false, err
	}
	_, err = c.Get(ctx, key, nil) // a nil loader: ErrNotFound when absent
	if errors.Is(err, cache.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d demoCache) Set(ctx context.Context, key string, value []byte, tags []string) error {
	c, err := d.use()
	if err != nil {
		return err
	}
	_, err = c.Set(ctx, key, value, cache.SetOptions{Tags: tags})
	return err
}

func (d demoCache) InvalidateTag(ctx context.Context, tag string) (int, error) {
	c, err := d.use()
	if err != nil {
		return 0, err
	}
	return c.InvalidateTag(ctx, tag)
}

func (d demoCache) Clear(ctx context.Context) (int, error) {
	c, err := d.use()
	if err != nil {
		return 0, err
	}
	return c.Clear(ctx)
}

func (d demoCache) Delete(ctx context.Context, key string) error {
	c, err := d.use()
	if err != nil {
		return err
	}
	if _, _, err = c.Del(ctx, key); errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	return err
}
