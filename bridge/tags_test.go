package bridge_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/cluster2/cluster2/bridge"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/redistest"
)

// pttl is redis-cli's PTTL of key: -1 persistent, -2 absent.
func pttl(t *testing.T, srv *redistest.Server, key string) int64 {
	t.Helper()
	out, err := srv.CLI("PTTL", key)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		t.Fatalf("PTTL %s: %q", key, out)
	}
	return n
}

// setFor is set with a time to live (negative: never).
func (h *site) setFor(t *testing.T, key string, ttl time.Duration, tags ...string) {
	t.Helper()
	if ok, err := h.c.Set(context.Background(), key, []byte("v"), cache.SetOptions{Expire: ttl, Tags: tags}); err != nil || !ok {
		t.Fatalf("set %q: %v %v", key, ok, err)
	}
}

// TestTagSetsExpireWithTheirMembers: a tag set lives as long as its
// longest-lived member may, and no longer (issue 17: they never expired).
func TestTagSetsExpireWithTheirMembers(t *testing.T) {
	srv := redistest.Start(t)
	a := newSite(t, srv, cache.Options{}, false)
	const tagA, tagB, tagC = "cluster2:d#a", "cluster2:d#b", "cluster2:d#c"

	// A new set gets its member's TTL: at least the value's, at most the TTL.
	a.setFor(t, "k1", 20*time.Second, "a")
	set, val := pttl(t, srv, tagA), pttl(t, srv, "cluster2:d:k1") // the set first: it cannot have more left than it had
	if set < val || set > 20_000 {
		t.Fatalf("tag set PTTL %d ms after a 20 s Set (the value's %d ms), want within [value's, 20000]", set, val)
	}
	// A longer-lived member extends it; a shorter one does not shorten it.
	a.setFor(t, "k2", time.Minute, "a")
	if set, val := pttl(t, srv, tagA), pttl(t, srv, "cluster2:d:k2"); set < val || set > 60_000 {
		t.Fatalf("tag set PTTL %d ms after a 1 min member (the value's %d ms)", set, val)
	}
	a.setFor(t, "k3", time.Second, "a")
	if set := pttl(t, srv, tagA); set < 20_000 {
		t.Fatalf("a 1 s member shortened the tag set to %d ms (its 1 min member)", set)
	}

	// A member without TTL makes the set persistent; a TTL member does not
	// give it an expiry back.
	a.setFor(t, "p", 10*time.Second, "b")
	a.setFor(t, "p2", -1, "b")
	if set := pttl(t, srv, tagB); set != -1 {
		t.Fatalf("tag set PTTL %d after a member without TTL, want -1", set)
	}
	a.setFor(t, "m", 300*time.Millisecond, "b")
	if set := pttl(t, srv, tagB); set != -1 {
		t.Fatalf("a 300 ms member gave a persistent tag set PTTL %d", set)
	}

	// A set whose only member is the one stored gets exactly its TTL, even
	// if it was persistent; past the TTLs the sets are gone from Redis.
	a.setFor(t, "q", -1, "c")
	a.setFor(t, "q", 300*time.Millisecond, "c")
	if set := pttl(t, srv, tagC); set < 0 || set > 300 {
		t.Fatalf("tag set PTTL %d after its only member's 300 ms Set, want within [0, 300]", set)
	}
	a.setFor(t, "s1", 300*time.Millisecond, "short")
	a.setFor(t, "s2", 400*time.Millisecond, "short", "c")
	waitFor(t, 10*time.Second, "the short-lived tag sets expire", func() bool {
		return pttl(t, srv, tagC) == -2 && pttl(t, srv, "cluster2:d#short") == -2
	})

	// InvalidateTag still takes every member, and the set with them.
	keys, err := a.c.InvalidateTag(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := srv.CLI("EXISTS", tagA, "cluster2:d:k1", "cluster2:d:k2"); err != nil || n != "0" {
		t.Fatalf("after InvalidateTag (%v) the set or its keys remain: EXISTS %s %v", keys, n, err)
	}
}

// TestTaggedSetErrors: a tag step Redis refuses leaves the value stored and
// says so (not ErrRedisDown: Redis answered), and a set-if-absent that finds
// a value tags nothing.
func TestTaggedSetErrors(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv, "d")
	ctx := context.Background()
	if _, err := srv.CLI("SET", "cluster2:d#bad", "not a set"); err != nil {
		t.Fatal(err)
	}
	stored, now, err := b.Set(ctx, "d", "w", []byte("v"), time.Minute, []string{"ok", "bad"}, false)
	var re *rueidis.RedisError
	if !stored || string(now) != "v" || err == nil || errors.Is(err, bridge.ErrRedisDown) || !errors.As(err, &re) {
		t.Fatalf("a Set whose tag set is a string: %v %q %v, want stored and Redis's error", stored, now, err)
	}
	if v, _ := srv.CLI("GET", "cluster2:d:w"); v != "v" {
		t.Fatalf("the value is not stored: %q", v)
	}
	if stored, now, err := b.Set(ctx, "d", "w", []byte("other"), time.Minute, []string{"x"}, true); err != nil || stored || string(now) != "v" {
		t.Fatalf("set-if-absent of a key with a value: %v %q %v", stored, now, err)
	}
	if n, _ := srv.CLI("EXISTS", "cluster2:d#x"); n != "0" {
		t.Fatal("a set-if-absent that stored nothing tagged the key")
	}
	if stored, _, err := b.Set(ctx, "d", "new", []byte("v"), 0, []string{"x"}, true); err != nil || !stored {
		t.Fatalf("set-if-absent of a new key: %v %v", stored, err)
	}
	if n := pttl(t, srv, "cluster2:d#x"); n != -1 {
		t.Fatalf("a member without TTL left its tag set PTTL %d", n)
	}
}
