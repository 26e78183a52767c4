// Package cachetest gives users' tests a real cluster2 cache without a
// cluster: a private arena with a cache space, closed (and verified) when the
// test ends.
package cachetest

import (
	"context"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// NewSpace returns a cache space of about bytes (0: 8 MiB) in a private arena.
// When the test ends it checks the space with Verify and fails the test on any
// inconsistency, then closes everything.
func NewSpace(tb testing.TB, bytes int64) *cache.Space {
	tb.Helper()
	if bytes == 0 {
		bytes = 8 << 20
	}
	a, err := shm.Create(shm.Options{Size: bytes + bytes/4 + 1<<20, Name: "cachetest"})
	if err != nil {
		tb.Fatalf("cachetest: arena: %v", err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: bytes})
	if err != nil {
		a.Close()
		tb.Fatalf("cachetest: setup: %v", err)
	}
	tb.Cleanup(func() {
		if err := sp.Verify(context.Background()); err != nil {
			tb.Errorf("cachetest: %v", err)
		}
		sp.Close()
		a.Close()
	})
	return sp
}

// New returns the named cache with opts in a fresh space (see NewSpace).
func New(tb testing.TB, name string, opts cache.Options) *cache.Cache {
	tb.Helper()
	c, err := NewSpace(tb, 0).Use(name, opts)
	if err != nil {
		tb.Fatalf("cachetest: use %q: %v", name, err)
	}
	return c
}
