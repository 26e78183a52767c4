package main

import (
	"context"
	"errors"

	"github.com/cluster2/cluster2/cache"
)

// demoCache is the store of the cache routes: the shared cache "demo",
// persistent when the demo runs with -data, with Always durability (a PUT
// answers once its value is on disk, so that it survives even kill -9 of the
// whole demo). Every process of the cluster opens it with the same options
// (they run the same flags).
type demoCache struct{ opts cache.Options }

func newCacheStore(dataDir string) store {
	if dataDir == "" {
		return demoCache{}
	}
	return demoCache{cache.Options{Persist: true, Durability: cache.Always}}
}

func (d demoCache) use() (*cache.Cache, error) { return cache.Use("demo", d.opts) }

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

func (d demoCache) Set(ctx context.Context, key string, value []byte) error {
	c, err := d.use()
	if err != nil {
		return err
	}
	_, err = c.Set(ctx, key, value, cache.SetOptions{})
	return err
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
