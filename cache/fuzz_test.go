package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// FuzzOps drives a cache with an operation sequence decoded from the input and
// checks every answer against a map, then Verify. The space is small (1 MiB)
// so that long inputs evict: an evicted key may be absent, never wrong.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 5, 2, 1, 0, 1, 200, 3, 1, 1, 1})
	f.Add(bytes.Repeat([]byte{0, 7, 255, 1, 7}, 200))
	f.Add([]byte("set get del keys leave-if-not-null"))
	a, err := shm.Create(shm.Options{Size: 4 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 1 << 20, Shards: 4})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sp.Close() })
	run := 0
	f.Fuzz(func(t *testing.T, ops []byte) {
		run++
		c, err := sp.Use(fmt.Sprint("fuzz", run%(cache.MaxCaches-1)), cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Start from an empty cache of that name.
		keys, _ := c.Keys(ctx)
		for _, k := range keys {
			c.Del(ctx, k)
		}
		model := map[string][]byte{}
		evictedBefore := c.Stats().Evictions
		ops = ops[:min(len(ops), 3*2000)] // long inputs add time, not coverage
		for len(ops) >= 3 {
			op, k, n := ops[0]%5, fmt.Sprintf("k%d", ops[1]%32), int(ops[2])*int(ops[2]%16+1)
			ops = ops[3:]
			val := bytes.Repeat([]byte{byte(n)}, n)
			switch op {
			case 0:
				if ok, err := c.Set(ctx, k, val, cache.SetOptions{}); err != nil || !ok {
					t.Fatalf("Set(%s, %d bytes) = %v, %v", k, n, ok, err)
				}
				model[k] = val
			case 1:
				got, ok, err := c.GetInto(nil, k)
				want, had := model[k]
				evicted := c.Stats().Evictions != evictedBefore
				if err != nil || (ok && !bytes.Equal(got, want)) || (ok && !had) || (!ok && had && !evicted) {
					t.Fatalf("GetInto(%s) = %d bytes, %v, %v; model %d bytes, %v", k, len(got), ok, err, len(want), had)
				}
			case 2:
				old, ok, err := c.Del(ctx, k)
				want, had := model[k]
				if err != nil || (ok && !bytes.Equal(old, want)) || (ok && !had) {
					t.Fatalf("Del(%s) = %d bytes, %v, %v; model %v", k, len(old), ok, err, had)
				}
				delete(model, k)
			case 3:
				ok, err := c.Set(ctx, k, val, cache.SetOptions{LeaveIfNotNull: true})
				_, had := model[k]
				if err != nil || (ok && had) {
					t.Fatalf("LeaveIfNotNull Set(%s) = %v, %v with the key present", k, ok, err)
				}
				if ok {
					model[k] = val
				}
			case 4:
				if _, err := c.Keys(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := sp.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
