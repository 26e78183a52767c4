package cache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/shm"
)

// FuzzOps drives a cache with an operation sequence decoded from the input and
// checks every answer against a map (values, which keys are counters, their
// tags: Set, Get, Del, LeaveIfNotNull, Keys, Add, CompareAndSwap,
// InvalidateTag, Clear), then Verify. The space is small (1 MiB)
// so that long inputs evict: an evicted key may be absent, never wrong.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 5, 2, 1, 0, 1, 200, 3, 1, 1, 1})
	f.Add(bytes.Repeat([]byte{0, 7, 255, 1, 7}, 200))
	f.Add([]byte("set get del keys leave-if-not-null"))
	f.Add([]byte{5, 1, 9, 5, 1, 9, 1, 1, 0, 0, 2, 3, 5, 2, 1, 6, 1, 1, 6, 2, 3, 7, 3, 4, 7, 4, 4, 8, 0, 4, 9, 0, 0})
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
		c, err := sp.Use(fmt.Sprint("fuzz", run%(cache.MaxCaches-1)), cache.Options{NotFoundExpire: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Start from an empty cache of that name.
		keys, _ := c.Keys(ctx)
		for _, k := range keys {
			c.Del(ctx, k)
		}
		forget := func() { // Del drops a remembered not-found too; Keys does not list one
			for i := range 32 {
				c.Del(ctx, fmt.Sprintf("k%d", i))
			}
		}
		forget()
		negative := map[string]bool{} // keys whose loader said not found (NotFoundExpire)
		// The model: each key's value, whether it is a counter, its tag.
		type entry struct {
			val     []byte
			counter bool
			tag     string
		}
		model := map[string]entry{}
		evictedBefore := c.Stats().Evictions
		ops = ops[:min(len(ops), 3*2000)] // long inputs add time, not coverage
		for len(ops) >= 3 {
			op, k, n := ops[0]%11, fmt.Sprintf("k%d", ops[1]%32), int(ops[2])*int(ops[2]%16+1)
			tag := fmt.Sprint("t", ops[2]%4)
			ops = ops[3:]
			val := bytes.Repeat([]byte{byte(n)}, n)
			evicted := c.Stats().Evictions != evictedBefore
			if op != 1 && op != 4 && op != 6 && op != 8 && op != 10 {
				delete(negative, k) // a write of the key replaces a remembered not-found
			}
			switch op {
			case 0, 7:
				var opts cache.SetOptions
				if op == 7 {
					opts.Tags = []string{tag}
				} else {
					tag = ""
				}
				if ok, err := c.Set(ctx, k, val, opts); err != nil || !ok {
					t.Fatalf("Set(%s, %d bytes) = %v, %v", k, n, ok, err)
				}
				model[k] = entry{val: val, tag: tag}
			case 1:
				got, ok, err := c.GetInto(nil, k)
				want, had := model[k]
				if err != nil || (ok && !bytes.Equal(got, want.val)) || (ok && !had) || (!ok && had && !evicted) {
					t.Fatalf("GetInto(%s) = %d bytes, %v, %v; model %d bytes, %v", k, len(got), ok, err, len(want.val), had)
				}
			case 2:
				old, ok, err := c.Del(ctx, k)
				want, had := model[k]
				if err != nil || (ok && !bytes.Equal(old, want.val)) || (ok && !had) {
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
					model[k] = entry{val: val}
				}
			case 4:
				if _, err := c.Keys(ctx); err != nil {
					t.Fatal(err)
				}
			case 5:
				delta := int64(n) - 1000
				e, had := model[k]
				got, err := c.Add(ctx, k, delta, cache.AddOptions{})
				switch {
				case had && !e.counter:
					if !errors.Is(err, cache.ErrNotCounter) && !(evicted && err == nil && got == delta) {
						t.Fatalf("Add(%s) on a plain value = %d, %v; want ErrNotCounter", k, got, err)
					}
					if err != nil {
						continue // unchanged
					}
				case had:
					old, _ := cache.CounterValue(e.val)
					if err != nil || got != old+delta && !(evicted && got == delta) {
						t.Fatalf("Add(%s, %d) = %d, %v; model %d", k, delta, got, err, old)
					}
				default:
					if err != nil || got != delta {
						t.Fatalf("Add(%s, %d) to an absent key = %d, %v", k, delta, got, err)
					}
				}
				v := binary.LittleEndian.AppendUint64(nil, uint64(got))
				model[k] = entry{val: v, counter: true, tag: e.tag}
			case 6:
				e, had := model[k]
				old := e.val
				if n%3 == 0 { // a wrong old value, now and then
					old = append(bytes.Clone(old), 'x')
				}
				ok, err := c.CompareAndSwap(ctx, k, old, val, cache.SetOptions{})
				switch {
				case !had:
					if ok || !errors.Is(err, cache.ErrNotFound) {
						t.Fatalf("CompareAndSwap(%s) of an absent key = %v, %v; want ErrNotFound", k, ok, err)
					}
				case errors.Is(err, cache.ErrNotFound) && evicted:
					delete(model, k)
				case err != nil || ok != (n%3 != 0):
					t.Fatalf("CompareAndSwap(%s, right old=%v) = %v, %v", k, n%3 != 0, ok, err)
				case ok:
					model[k] = entry{val: val}
				}
			case 8:
				removed, err := c.InvalidateTag(ctx, tag)
				want := 0
				for mk, e := range model {
					if e.tag == tag {
						want++
						delete(model, mk)
					}
				}
				if err != nil || removed > want || removed < want && !evicted {
					t.Fatalf("InvalidateTag(%s) = %d, %v; the model has %d", tag, removed, err, want)
				}
			case 9:
				removed, err := c.Clear(ctx)
				if err != nil || removed > len(model) || removed < len(model) && !evicted {
					t.Fatalf("Clear = %d, %v; the model has %d", removed, err, len(model))
				}
				clear(model)
				forget()
				clear(negative)
			case 10: // Get with a loader that finds the value or says not found
				e, had := model[k]
				calls := 0
				got, err := c.Get(ctx, k, func(context.Context, string) ([]byte, error) {
					calls++
					if n%2 == 1 {
						return nil, cache.ErrNotFound
					}
					return val, nil
				})
				switch {
				case calls > 0 && (had || negative[k]) && !evicted:
					t.Fatalf("Get(%s) called its loader; model value %v, not found %v", k, had, negative[k])
				case calls > 0 && n%2 == 1, calls == 0 && negative[k]:
					if !errors.Is(err, cache.ErrNotFound) {
						t.Fatalf("Get(%s) = %v; want ErrNotFound", k, err)
					}
					delete(model, k)
					negative[k] = true
				case calls > 0:
					if err != nil || !bytes.Equal(got, val) {
						t.Fatalf("Get(%s) of a loaded value = %d bytes, %v", k, len(got), err)
					}
					model[k] = entry{val: val}
					delete(negative, k)
				case err != nil || !bytes.Equal(got, e.val):
					t.Fatalf("Get(%s) = %d bytes, %v; model %d bytes", k, len(got), err, len(e.val))
				}
			}
		}
		if err := sp.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
