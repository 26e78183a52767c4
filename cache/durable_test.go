package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
	"github.com/cluster2/cluster2/persist"
)

// Always writers wait for the log writer's durable position, however many
// wait in one process (one of them sleeps on the futex for all), and a
// writer whose context ends gives up alone with ErrNotDurable.
func TestAlwaysWaitsForDurable(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	c, err := sp.Use("p", cache.Options{Persist: true, Durability: cache.Always})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(bg, "early", []byte("x"), cache.SetOptions{}); !errors.Is(err, cache.ErrNotDurable) {
		t.Fatalf("Always Set without a log writer = %v; want ErrNotDurable", err)
	}
	p, err := sp.Journal().Attach(cache.Always)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	p.Durable(p.Skip())

	const writers = 8
	var returned atomic.Int32
	errs := make(chan error, writers+1)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			_, err := c.Set(bg, fmt.Sprint("k", w), []byte("v"), cache.SetOptions{})
			returned.Add(1)
			errs <- err
		})
	}
	// One more writer whose context ends while the others wait.
	ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
	defer cancel()
	if _, err := c.Set(ctx, "impatient", []byte("v"), cache.SetOptions{}); !errors.Is(err, cache.ErrNotDurable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set whose context ended = %v; want ErrNotDurable and DeadlineExceeded", err)
	}
	if v, ok, _ := c.GetInto(nil, "impatient"); !ok || string(v) != "v" {
		t.Fatal("the change of a writer that gave up is not in the cache")
	}
	if n := returned.Load(); n != 0 {
		t.Fatalf("%d writers returned before anything was durable", n)
	}
	// The log writer reads every writer's record and says it is durable.
	seen := 0
	for seen < writers {
		_, err := p.Read(1000, func(r persist.Record) error {
			if r.Op == persist.OpSet && r.Key[0] == 'k' {
				seen++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if n := returned.Load(); n != 0 {
		t.Fatalf("%d writers returned before anything was durable", n)
	}
	p.Durable(p.Position())
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Set after Durable = %v", err)
		}
	}
}
