package bridge_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/redistest"
)

// TestFleetLoadRunsTheLoaderOnce: with FleetLoad, two hosts that miss one
// key at once run its loader once between them (the second waits for the
// first's value in Redis); without it, both run it.
func TestFleetLoadRunsTheLoaderOnce(t *testing.T) {
	for _, tc := range []struct {
		fleet time.Duration
		want  int32
	}{{10 * time.Second, 1}, {0, 2}} {
		srv := redistest.Start(t)
		cfg := bridge.Config{FleetLoad: tc.fleet}
		hosts := []*site{newSiteWith(t, srv, cache.Options{}, cfg), newSiteWith(t, srv, cache.Options{}, cfg)}
		var runs, inside atomic.Int32
		load := func(context.Context, string) ([]byte, error) {
			runs.Add(1)
			inside.Add(1)
			// Stay until the other host has missed too (or long enough
			// that it would have on a loaded machine: with the lock it
			// waits outside).
			deadline := time.Now().Add(3 * time.Second)
			for inside.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			return []byte("computed"), nil
		}
		var wg sync.WaitGroup
		got := make([]string, len(hosts))
		for i, h := range hosts {
			wg.Go(func() {
				v, err := h.c.Get(context.Background(), "k", load)
				if err != nil {
					t.Error(err)
				}
				got[i] = string(v)
			})
		}
		wg.Wait()
		if n := runs.Load(); n != tc.want {
			t.Fatalf("FleetLoad %v: the loader ran %d times for two hosts missing at once, want %d", tc.fleet, n, tc.want)
		}
		if got[0] != "computed" || got[1] != "computed" {
			t.Fatalf("FleetLoad %v: the hosts got %q", tc.fleet, got)
		}
		if out, err := srv.CLI("EXISTS", "cluster2:d!k"); err != nil || out != "0" {
			t.Fatalf("the load lock is left: EXISTS says %q %v", out, err)
		}
	}
}

// TestFleetLoadWaitIsBounded: a lock whose holder is gone (taken by
// redis-cli, as by a host killed while loading) delays a miss until it
// expires, then the miss loads; the release never removes a lock it does not
// hold.
func TestFleetLoadWaitIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	a := newSiteWith(t, srv, cache.Options{}, bridge.Config{FleetLoad: 30 * time.Second})
	if _, err := srv.CLI("SET", "cluster2:d!k", "a-dead-host", "PX", "300"); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	v, err := a.c.Get(context.Background(), "k", func(context.Context, string) ([]byte, error) {
		runs.Add(1)
		// Another host takes the lock while this one loads (as if this
		// load outlived its lock): this host's release must leave it.
		if _, err := srv.CLI("SET", "cluster2:d!k", "another-host", "PX", "60000"); err != nil {
			t.Error(err)
		}
		return []byte("mine"), nil
	})
	if err != nil || string(v) != "mine" || runs.Load() != 1 {
		t.Fatalf("a miss behind a dead host's lock: %q %v (%d runs), want its own load", v, err, runs.Load())
	}
	if out, err := srv.CLI("GET", "cluster2:d!k"); err != nil || out != "another-host" {
		t.Fatalf("the release removed a lock it did not hold: GET says %q %v", out, err)
	}
	// A miss behind a live lock whose holder's value arrives returns that
	// value without running its loader.
	b := newSiteWith(t, srv, cache.Options{}, bridge.Config{FleetLoad: 30 * time.Second})
	go func() {
		time.Sleep(100 * time.Millisecond)
		srv.CLI("SET", "cluster2:d:k2", "from-the-holder")
	}()
	if _, err := srv.CLI("SET", "cluster2:d!k2", "holder", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	v, err = b.c.Get(context.Background(), "k2", func(context.Context, string) ([]byte, error) {
		t.Error("the loader ran while another host held the lock and delivered")
		return nil, nil
	})
	if err != nil || string(v) != "from-the-holder" {
		t.Fatalf("a miss behind a live lock: %q %v", v, err)
	}
	// A caller's context that ends while it waits ends its Get.
	if _, err := srv.CLI("SET", "cluster2:d!k3", "holder", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.c.Get(ctx, "k3", func(context.Context, string) ([]byte, error) {
		t.Error("the loader ran after the caller gave up")
		return nil, nil
	}); err == nil {
		t.Fatal("a Get whose context ended while it waited for the lock succeeded")
	}
}

func TestFleetLoadConfig(t *testing.T) {
	if err := (bridge.Config{Addr: "127.0.0.1:1", FleetLoad: -time.Second}).Validate(); err == nil {
		t.Fatal("a negative FleetLoad was accepted")
	}
}
