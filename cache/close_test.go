package cache_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
)

// watchInto watches every key of c and sends each change's value to the
// returned channel.
func watchInto(c *cache.Cache) chan string {
	ch := make(chan string, 16)
	c.Watch("", func(x cache.Change) { ch <- string(x.Value) })
	return ch
}

func recv(t *testing.T, ch chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("watcher told %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watcher not told of %q", want)
	}
}

// TestCloseOneHandle: every Use returns a handle of its own, and Close
// closes only that one (and its watchers), twice without harm; Space.Close
// closes them all.
func TestCloseOneHandle(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	a, err := sp.Use("t", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sp.Use("t", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two Uses returned the same handle")
	}
	wa, wb := watchInto(a), watchInto(b)
	mustSet(t, a, "k", "1")
	recv(t, wa, "1")
	recv(t, wb, "1")

	for range 2 {
		if err := a.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
	}
	if _, err := a.Get(bg, "k", nil); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get on the closed handle = %v, want ErrClosed", err)
	}
	if _, err := a.Keys(bg); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Keys on the closed handle = %v, want ErrClosed", err)
	}
	wc := watchInto(a) // a closed handle watches nothing
	if v, err := b.Get(bg, "k", nil); err != nil || string(v) != "1" {
		t.Fatalf("Get on the other handle after Close = %q, %v, want 1", v, err)
	}
	mustSet(t, b, "k", "2")
	recv(t, wb, "2")
	// b's watcher was told of "2": the change was dispatched, after a's
	// Close unwatched a's watcher, and before a's Watch after Close.
	select {
	case v := <-wa:
		t.Fatalf("the closed handle's watcher was told %q", v)
	case v := <-wc:
		t.Fatalf("a watcher made with the closed handle was told %q", v)
	default:
	}
	if _, err := sp.Use("t", cache.Options{}); err != nil {
		t.Fatalf("Use after a Close = %v", err)
	}

	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(bg, "k", nil); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Get after Space.Close = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close after Space.Close = %v", err)
	}
	if _, err := sp.Use("t", cache.Options{}); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Use after Space.Close = %v, want ErrClosed", err)
	}
}
