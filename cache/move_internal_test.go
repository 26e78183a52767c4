package cache

import (
	"context"
	"testing"
	"time"

	"github.com/cluster2/cluster2/shm"
)

// TestMoveLoadingBothPaths moves a loading record from the tail to the head
// by the crash-safe path and by the overlapping one (forced: free passed as
// 0), and checks that the index still finds it, unchanged, at its new place,
// that the log still parses (Verify) and that the load it names can finish.
func TestMoveLoadingBothPaths(t *testing.T) {
	bg := context.Background()
	for _, overlap := range []bool{false, true} {
		a, err := shm.Create(shm.Options{Size: 8 << 20, Name: "move"})
		if err != nil {
			t.Fatal(err)
		}
		sp, err := Setup(bg, a, SpaceOptions{Bytes: 2 << 20, Shards: 1})
		if err != nil {
			t.Fatal(err)
		}
		c, err := sp.Use("m", Options{})
		if err != nil {
			t.Fatal(err)
		}
		key := "loading-key"
		h := hashKey(c.id, key)
		sh := sp.shardOf(h)
		if err := sp.lock(bg, sh); err != nil {
			t.Fatal(err)
		}
		me := sp.p.Token()
		if _, _, err := sp.store(sh, kindLoading, c.id, h, key, nil, 42, me); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if _, _, err := sp.store(sh, kindItem, c.id, hashKey(c.id, string(rune('a'+i))), string(rune('a'+i)), make([]byte, 500), 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		s := sp.find(sh, h, c.id, key)
		toff := s.off()
		if toff != sh.heapOff+sh.h.tail.Load()%sp.heap {
			t.Fatal("set-up: the loading record is not at the tail")
		}
		head, tail := sh.h.head.Load(), sh.h.tail.Load()
		free := sp.heap - (head - tail)
		phys := head % sp.heap
		if overlap {
			free = 0
		}
		sp.moveLoading(sh, s, toff, uint64(sp.rec(toff).size), free, phys, sp.heap-phys)
		s = sp.find(sh, h, c.id, key)
		if !s.valid() || s.off() == toff {
			t.Fatalf("overlap %v: after the move the key's slot is %v at %d (was %d)", overlap, s.valid(), s.off(), toff)
		}
		if r := sp.rec(s.off()); r.kind != kindLoading || r.owner != me || r.exp != 42 || sh.h.tail.Load() != tail+uint64(r.size) {
			t.Fatalf("overlap %v: moved record %+v, tail %d -> %d", overlap, *r, tail, sh.h.tail.Load())
		}
		if seq := s.b.seq.Load(); seq&1 != 0 {
			t.Fatalf("overlap %v: bucket sequence left odd", overlap)
		}
		sp.unlock(sh)
		if err := sp.Verify(bg); err != nil {
			t.Fatalf("overlap %v: %v", overlap, err)
		}
		v, err := c.runLoad(bg, sh, key, loadMark{load: 42}, nil, func(context.Context, string) ([]byte, error) { return []byte("v"), nil }, time.Now())
		if err != nil || string(v) != "v" {
			t.Fatalf("overlap %v: the moved load's finish = %q, %v", overlap, v, err)
		}
		if got, ok, _ := c.GetInto(nil, key); !ok || string(got) != "v" {
			t.Fatalf("overlap %v: after the load, GetInto = %q, %v; want the loaded value", overlap, got, ok)
		}
		sp.Close()
		a.Close()
	}
}
