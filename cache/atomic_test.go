package cache_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/cache/cachetest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestAddCounter(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	if n, err := c.Add(bg, "n", 5, cache.AddOptions{Initial: 10, Expire: time.Hour}); err != nil || n != 15 {
		t.Fatalf("Add to an absent key = %d, %v; want 15 (Initial 10 + 5)", n, err)
	}
	if n, err := c.Add(bg, "n", -20, cache.AddOptions{Initial: 1000}); err != nil || n != -5 {
		t.Fatalf("Add to a counter = %d, %v; want -5 (Initial ignored)", n, err)
	}
	e, err := c.Inspect("n")
	if err != nil || e.TTL < 59*time.Minute {
		t.Fatalf("the counter's TTL after a second Add: %+v, %v; want the first Add's hour kept", e, err)
	}
	if v, n := e.Value, int64(-5); len(v) != 8 {
		t.Fatalf("a counter reads as %d bytes; want 8", len(v))
	} else if got, ok := cache.CounterValue(v); !ok || got != n {
		t.Fatalf("CounterValue(Get) = %d, %v; want %d", got, ok, n)
	}
	if n, ok, err := c.Counter(bg, "n"); err != nil || !ok || n != -5 {
		t.Fatalf("Counter = %d, %v, %v; want -5", n, ok, err)
	}
	if _, ok, err := c.Counter(bg, "absent"); err != nil || ok {
		t.Fatalf("Counter of an absent key = %v, %v; want false, nil", ok, err)
	}

	// Bad input: nothing changes.
	mustSet(t, c, "plain", "12345678") // 8 bytes, but not a counter
	if _, err := c.Add(bg, "plain", 1, cache.AddOptions{}); !errors.Is(err, cache.ErrNotCounter) {
		t.Fatalf("Add to a plain value = %v; want ErrNotCounter", err)
	}
	if _, _, err := c.Counter(bg, "plain"); !errors.Is(err, cache.ErrNotCounter) {
		t.Fatalf("Counter of a plain value = %v; want ErrNotCounter", err)
	}
	if v, _ := c.Get(bg, "plain", nil); string(v) != "12345678" {
		t.Fatalf("plain value after a refused Add = %q", v)
	}
	if _, err := c.Add(bg, "big", math.MaxInt64, cache.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(bg, "big", 1, cache.AddOptions{}); !errors.Is(err, cache.ErrOverflow) {
		t.Fatalf("Add past MaxInt64 = %v; want ErrOverflow", err)
	}
	if _, err := c.Add(bg, "small", math.MinInt64, cache.AddOptions{Initial: -1}); !errors.Is(err, cache.ErrOverflow) {
		t.Fatalf("Add below MinInt64 on create = %v; want ErrOverflow", err)
	}
	if n, _, _ := c.Counter(bg, "big"); n != math.MaxInt64 {
		t.Fatalf("counter after a refused overflow = %d; want MaxInt64", n)
	}
	if _, ok, _ := c.GetInto(nil, "small"); ok {
		t.Fatal("an Add refused for overflow created its key")
	}
	// A Set over a counter makes a plain value.
	mustSet(t, c, "n", "x")
	if _, err := c.Add(bg, "n", 1, cache.AddOptions{}); !errors.Is(err, cache.ErrNotCounter) {
		t.Fatalf("Add after a Set over the counter = %v; want ErrNotCounter", err)
	}
	if st := c.Stats(); st.CounterOps != 3 {
		t.Fatalf("Stats.CounterOps = %d; want 3 (the refused Adds do not count)", st.CounterOps)
	}
}

func TestAddExpiredCounterStartsOver(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	if _, err := c.Add(bg, "w", 7, cache.AddOptions{Expire: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if n, err := c.Add(bg, "w", 1, cache.AddOptions{Expire: time.Hour}); err != nil || n != 1 {
		t.Fatalf("Add after the counter expired = %d, %v; want 1", n, err)
	}
}

// TestAddIsAtomic adds from many goroutines at once (the same shard lock
// serves every process: the multi-process test covers processes).
func TestAddIsAtomic(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if _, err := c.Add(bg, "n", 1, cache.AddOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, _, _ := c.Counter(bg, "n"); n != 4000 {
		t.Fatalf("counter = %d after 8×500 concurrent Adds; want 4000", n)
	}
}

func TestCompareAndSwap(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	if ok, err := c.CompareAndSwap(bg, "k", nil, []byte("v"), cache.SetOptions{}); ok || !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("CAS on a missing key = %v, %v; want false, ErrNotFound", ok, err)
	}
	if _, ok, _ := c.GetInto(nil, "k"); ok {
		t.Fatal("a CAS on a missing key stored a value")
	}
	mustSet(t, c, "k", "a")
	if ok, err := c.CompareAndSwap(bg, "k", []byte("b"), []byte("c"), cache.SetOptions{}); ok || err != nil {
		t.Fatalf("CAS with the wrong old value = %v, %v; want false, nil", ok, err)
	}
	if v, _ := c.Get(bg, "k", nil); string(v) != "a" {
		t.Fatalf("value after a failed CAS = %q; want a", v)
	}
	if ok, err := c.CompareAndSwap(bg, "k", []byte("a"), []byte("b"), cache.SetOptions{}); !ok || err != nil {
		t.Fatalf("CAS = %v, %v; want true", ok, err)
	}
	if v, _ := c.Get(bg, "k", nil); string(v) != "b" {
		t.Fatalf("value after CAS = %q; want b", v)
	}
	if st := c.Stats(); st.CASFailures != 1 {
		t.Fatalf("Stats.CASFailures = %d; want 1", st.CASFailures)
	}
	// Concurrent CAS loops on one value: every increment lands once.
	mustSet(t, c, "x", "0")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				for {
					old, err := c.Get(bg, "x", nil)
					if err != nil {
						t.Error(err)
						return
					}
					var n int
					fmt.Sscan(string(old), &n)
					ok, err := c.CompareAndSwap(bg, "x", old, []byte(fmt.Sprint(n+1)), cache.SetOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if v, _ := c.Get(bg, "x", nil); string(v) != "800" {
		t.Fatalf("after 4×200 CAS increments x = %q; want 800", v)
	}
}

func TestSetIfAbsent(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	if ok, err := c.SetIfAbsent(bg, "k", []byte("first"), cache.SetOptions{}); !ok || err != nil {
		t.Fatalf("SetIfAbsent of an absent key = %v, %v", ok, err)
	}
	if ok, err := c.SetIfAbsent(bg, "k", []byte("second"), cache.SetOptions{}); ok || err != nil {
		t.Fatalf("SetIfAbsent of a present key = %v, %v; want false", ok, err)
	}
	if v, _ := c.Get(bg, "k", nil); string(v) != "first" {
		t.Fatalf("value = %q; want first", v)
	}
}

func TestTagsAndClear(t *testing.T) {
	sp := cachetest.NewSpace(t, 0)
	c, _ := sp.Use("t", cache.Options{})
	other, _ := sp.Use("other", cache.Options{})
	var mu sync.Mutex
	var dels []string
	w := c.Watch("", func(ch cache.Change) {
		if ch.Op == cache.OpDel {
			mu.Lock()
			dels = append(dels, ch.Key)
			mu.Unlock()
		}
	})
	defer c.Unwatch(w)
	for i := range 300 {
		tags := []string{"all"}
		if i%3 == 0 {
			tags = append(tags, "three")
		}
		if ok, err := c.Set(bg, fmt.Sprint("k", i), []byte("v"), cache.SetOptions{Tags: tags}); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	mustSet(t, c, "untagged", "v")
	other.Set(bg, "k0", []byte("v"), cache.SetOptions{Tags: []string{"three"}})
	if _, err := c.Add(bg, "ctr", 1, cache.AddOptions{Tags: []string{"three"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Add(bg, "ctr", 1, cache.AddOptions{}); err != nil { // keeps its tag
		t.Fatal(err)
	}
	n, err := c.InvalidateTag(bg, "three")
	if err != nil || n != 101 {
		t.Fatalf("InvalidateTag = %d, %v; want 101 (100 keys and the counter)", n, err)
	}
	for i := range 300 {
		_, ok, _ := c.GetInto(nil, fmt.Sprint("k", i))
		if ok == (i%3 == 0) {
			t.Fatalf("k%d present=%v after invalidating tag three", i, ok)
		}
	}
	if _, ok, _ := c.GetInto(nil, "ctr"); ok {
		t.Fatal("the tagged counter survived")
	}
	if _, ok, _ := other.GetInto(nil, "k0"); !ok {
		t.Fatal("InvalidateTag removed an entry of another cache")
	}
	if err := sp.Verify(bg); err != nil {
		t.Fatal(err)
	}
	n, err = c.Clear(bg)
	if err != nil || n != 201 {
		t.Fatalf("Clear = %d, %v; want 201", n, err)
	}
	if keys, _ := c.Keys(bg); len(keys) != 0 {
		t.Fatalf("keys after Clear: %v", keys)
	}
	if st := c.Stats(); st.Entries != 0 || st.TagInvalidations != 1 || st.Clears != 1 {
		t.Fatalf("Stats after Clear = %+v", st)
	}
	if _, ok, _ := other.GetInto(nil, "k0"); !ok {
		t.Fatal("Clear removed an entry of another cache")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := len(dels)
		mu.Unlock()
		if got == 302 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dels) != 302 || w.Lost() != 0 {
		t.Fatalf("watcher heard %d deletions (lost %d); want 302, one per removed entry", len(dels), w.Lost())
	}
	slices.Sort(dels)
	if len(slices.Compact(dels)) != 302 {
		t.Fatalf("watcher heard a key twice")
	}
	if err := sp.Verify(bg); err != nil {
		t.Fatal(err)
	}
}

func TestTagBounds(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	mustSet(t, c, "keep", "me")
	many := make([]string, cache.MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	cases := []struct {
		name string
		err  error
		do   func() error
	}{
		{"too many tags", cache.ErrTooManyTags, func() error {
			_, err := c.Set(bg, "keep", []byte("x"), cache.SetOptions{Tags: many})
			return err
		}},
		{"long tag", cache.ErrBadTag, func() error {
			_, err := c.Set(bg, "keep", []byte("x"), cache.SetOptions{Tags: []string{strings.Repeat("t", cache.MaxTagLen+1)}})
			return err
		}},
		{"empty tag", cache.ErrBadTag, func() error {
			_, err := c.Set(bg, "keep", []byte("x"), cache.SetOptions{Tags: []string{""}})
			return err
		}},
		{"cas with too many tags", cache.ErrTooManyTags, func() error {
			_, err := c.CompareAndSwap(bg, "keep", []byte("me"), []byte("x"), cache.SetOptions{Tags: many})
			return err
		}},
		{"add with a long tag", cache.ErrBadTag, func() error {
			_, err := c.Add(bg, "n", 1, cache.AddOptions{Tags: []string{strings.Repeat("t", 65)}})
			return err
		}},
		{"invalidate a long tag", cache.ErrBadTag, func() error {
			_, err := c.InvalidateTag(bg, strings.Repeat("t", 65))
			return err
		}},
	}
	for _, tc := range cases {
		if err := tc.do(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.err)
		}
	}
	if v, _ := c.Get(bg, "keep", nil); string(v) != "me" {
		t.Fatalf("keep = %q after refused writes", v)
	}
	if _, ok, _ := c.GetInto(nil, "n"); ok {
		t.Fatal("a refused Add stored a counter")
	}
	// Duplicates count once; MaxTags distinct tags are accepted.
	dup := append(many[:cache.MaxTags:cache.MaxTags], many[0], many[1])
	if ok, err := c.Set(bg, "k", []byte("v"), cache.SetOptions{Tags: dup}); !ok || err != nil {
		t.Fatalf("Set with %d distinct tags and duplicates = %v, %v", cache.MaxTags, ok, err)
	}
	if n, err := c.InvalidateTag(bg, many[cache.MaxTags-1]); n != 1 || err != nil {
		t.Fatalf("InvalidateTag of the last tag = %d, %v; want 1", n, err)
	}
}

// TestWatchHearsAtomicOps: a watcher hears an Add as an OpSet of the
// counter's 8 bytes, a tagged Set's value without its tag list, a CAS as an
// OpSet, and nothing for a failed CAS, a refused Add or a SetIfAbsent that
// found a value.
func TestWatchHearsAtomicOps(t *testing.T) {
	c := cachetest.New(t, "t", cache.Options{})
	var mu sync.Mutex
	var got []string
	w := c.Watch("", func(ch cache.Change) {
		mu.Lock()
		defer mu.Unlock()
		if n, ok := cache.CounterValue(ch.Value); ok && ch.Key == "n" {
			got = append(got, fmt.Sprint(ch.Op, ":", ch.Key, "=", n))
			return
		}
		got = append(got, fmt.Sprint(ch.Op, ":", ch.Key, "=", string(ch.Value)))
	})
	defer c.Unwatch(w)
	c.Add(bg, "n", 2, cache.AddOptions{})
	c.Add(bg, "n", 3, cache.AddOptions{})
	c.Set(bg, "k", []byte("tagged"), cache.SetOptions{Tags: []string{"a", "b"}})
	c.Add(bg, "k", 1, cache.AddOptions{})                                       // refused: not a counter
	c.CompareAndSwap(bg, "k", []byte("wrong"), []byte("x"), cache.SetOptions{}) // fails
	c.CompareAndSwap(bg, "k", []byte("tagged"), []byte("swapped"), cache.SetOptions{})
	c.SetIfAbsent(bg, "k", []byte("no"), cache.SetOptions{})
	c.InvalidateTag(bg, "a") // k is no longer tagged: nothing
	c.Clear(bg)
	want := []string{"set:n=2", "set:n=5", "set:k=tagged", "set:k=swapped", "del:k=", "del:n="}
	ok := xtesting.Eventually(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= len(want) })
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got[len(got)-2:]) // Clear's order is the index's
	slices.Sort(want[len(want)-2:])
	if !ok || !slices.Equal(got, want) {
		t.Fatalf("watcher heard %q; want %q", got, want)
	}
}
