package cache

import (
	"context"
	"fmt"
	"testing"
)

// TestOverwriteGoesToTheMainLog: a new key enters the small log and its
// overwrite goes to the main log (an overwrite is an access: see place);
// and a cache whose keys are set over and over in turn (the CacheSet
// benchmark's workload) promotes nothing: before, each overwrite went back
// into the small log, reached the small tail just as it was overwritten
// again, and every Set also copied its dying old version to the main log.
func TestOverwriteGoesToTheMainLog(t *testing.T) {
	bg := context.Background()
	sp, c := testCache(t, SpaceOptions{Bytes: 4 << 20, Shards: 1}, "o")
	sh := &sp.sh[0]
	inSmall := func(key string) bool {
		h := hashKey(c.id, key)
		s := sp.find(sh, h, c.id, key)
		if !s.valid() {
			t.Fatalf("%q is not in the index", key)
		}
		return s.off() >= sh.heapOff+sp.heap
	}
	val := make([]byte, 64)
	if _, err := c.Set(bg, "k", val, SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if !inSmall("k") {
		t.Fatal("a new key did not enter the small log")
	}
	if _, err := c.Set(bg, "k", val, SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if inSmall("k") {
		t.Fatal("an overwrite went back into the small log")
	}
	// Keys set in turn, several times over, in a cache that holds them all.
	n := int(sp.small/128) * 3 // three small logs' worth of 128-byte records
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%08d", i)
	}
	for range 2 { // the first round enters them
		for _, k := range keys {
			if _, err := c.Set(bg, k, val, SetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := sh.h.promoted.Load()
	for range 5 {
		for _, k := range keys {
			if _, err := c.Set(bg, k, val, SetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if p := sh.h.promoted.Load() - before; p != 0 {
		t.Fatalf("%d promotions in 5 rounds of overwrites of %d keys; want none", p, n)
	}
	for _, k := range keys {
		if _, ok, _ := c.GetInto(nil, k); !ok {
			t.Fatalf("%q was lost to the overwrites", k)
		}
	}
	if err := sp.Verify(bg); err != nil {
		t.Fatal(err)
	}
}
