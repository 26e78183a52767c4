package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// damageSpace is a one- or two-shard space with keys k0..k39 of 300-byte
// values in cache "d" (watched, so that drops journal their keys), made for
// one damage case.
func damageSpace(t *testing.T, shards int) (*shm.Arena, *Space, *Cache) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: 8 << 20, Name: "damage"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	sp, err := Setup(context.Background(), a, SpaceOptions{Bytes: 2 << 20, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	c, err := sp.Use("d", Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := c.Watch("", func(Change) {})
	t.Cleanup(func() { c.Unwatch(w) })
	for k := range 40 {
		if _, err := c.Set(context.Background(), fmt.Sprint("k", k), make([]byte, 300), SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return a, sp, c
}

// useDamaged runs every read and write of the cache, Verify and Sweep on a
// damaged space, each bounded: any panic or
// a call that does not return in 5 s fails the test. Results are not
// checked (a damaged space may miss, refuse or repair), only that each call
// returns.
func useDamaged(t *testing.T, sp *Space, c *Cache) {
	t.Helper()
	done := make(chan any, 1)
	step := "start"
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Sprintf("panic in %s: %v\n%s", step, p, debug.Stack())
				return
			}
			done <- nil
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for k := range 40 {
			key := fmt.Sprint("k", k)
			step = "GetInto " + key
			c.GetInto(nil, key)
			step = "Inspect " + key
			c.Inspect(key)
			step = "Set " + key
			c.Set(ctx, key, make([]byte, 700), SetOptions{})
			step = "Get " + key
			c.Get(ctx, key+"-loaded", func(context.Context, string) ([]byte, error) { return []byte("v"), nil })
			if k%3 == 0 {
				step = "Del " + key
				c.Del(ctx, key)
			}
		}
		step = "Keys"
		c.Keys(ctx)
		step = "Stats"
		c.Stats()
		step = "Sweep"
		sp.Sweep()
		step = "Verify"
		sp.Verify(ctx)
	}()
	select {
	case p := <-done:
		if p != nil {
			t.Fatal(p)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("hang: %s has not returned in 5 s", step)
	}
}

// slotOf returns the index slot holding key, found without trusting
// anything but the slot words' tags (the test damages what they point at).
func slotOf(t *testing.T, sp *Space, c *Cache, key string) (*shard, slotRef) {
	t.Helper()
	h := hashKey(c.id, key)
	sh := sp.shardOf(h)
	s := sp.find(sh, h, c.id, key)
	if !s.valid() {
		t.Fatalf("set-up: %q has no slot", key)
	}
	return sh, s
}

// Issue 12 (no read can crash a process): every position, offset, length
// and count the cache reads from shared memory is checked before it is
// indexed with. Each case damages one of them in a healthy space the way a
// stray write would, then uses the space every way a process does: a miss,
// a refusal, a repair or a reset of the shard, never a panic or a hang.
// Before the fix each case panicked (shm.Ptr out of bounds or misaligned,
// a slice out of range) or looped for ever.
func TestDamagedSpaceNeverPanics(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, sp *Space, c *Cache)
	}{
		{"head off a record boundary", func(t *testing.T, sp *Space, c *Cache) {
			sh := &sp.sh[0]
			sh.h.head.Add(1) // reserve took its write offset from head%heap: shm.Ptr panicked in write
		}},
		{"tail off a record boundary", func(t *testing.T, sp *Space, c *Cache) {
			sh := &sp.sh[0]
			sh.h.tail.Add(8) // the log walks from tail: Verify's sp.rec read a header at a wrong place
			sh.h.tail.Add(1)
		}},
		{"slot past the arena", func(t *testing.T, sp *Space, c *Cache) {
			_, s := slotOf(t, sp, c, "k1")
			w := s.b.slots[s.i].Load()
			s.b.slots[s.i].Store(w>>48<<48 | uint64(sp.a.Size()) + 4096) // find's sp.rec panicked
		}},
		{"slot off a record boundary", func(t *testing.T, sp *Space, c *Cache) {
			_, s := slotOf(t, sp, c, "k2")
			s.b.slots[s.i].Store(s.b.slots[s.i].Load() + 8) // +1..+3 is an access count, not damage
		}},
		{"record value length past the arena", func(t *testing.T, sp *Space, c *Cache) {
			// The record of a key of the last shard, near the arena's end:
			// its value length points past it (Del's and Inspect's recVal).
			for k := range 40 {
				key := fmt.Sprint("k", k)
				if sh, s := slotOf(t, sp, c, key); sh == &sp.sh[len(sp.sh)-1] {
					sp.rec(s.off()).vlen = 1 << 31
					return
				}
			}
			t.Fatal("set-up: no key in the last shard")
		}},
		{"loading record larger than a loading record", func(t *testing.T, sp *Space, c *Cache) {
			// A loading record at the tail whose size says 2 KiB: moveLoading
			// copied it through a buffer of 1128 bytes.
			sh := &sp.sh[0]
			sp.reset(sh)
			key := "loading"
			h := hashKey(c.id, key)
			for i := 0; h&sp.smsk != 0; i++ {
				key = fmt.Sprint("loading", i)
				h = hashKey(c.id, key)
			}
			if err := sp.lock(context.Background(), sh); err != nil {
				t.Fatal(err)
			}
			off, _, err := sp.store(sh, kindLoading, c.id, h, key, nil, 1, sp.p.Token())
			if err == nil {
				for i := 0; sh.h.head.Load()-sh.h.tail.Load() < 4096; i++ {
					k := fmt.Sprint("fill", i)
					kh := hashKey(c.id, k)
					if kh&sp.smsk == 0 {
						// Larger than the small log takes: into the main log.
						_, _, err = sp.store(sh, kindItem, c.id, kh, k, make([]byte, sp.smallMax), 0, 0)
					}
				}
			}
			sp.unlock(sh)
			if err != nil || off != sh.heapOff+sh.h.tail.Load()%sp.heap {
				t.Fatalf("set-up: %v, loading record at %d, tail at %d", err, off, sh.h.tail.Load())
			}
			// And a head that leaves 1 KiB free: reserve moves the record
			// by its overlapping path, through the buffer.
			sp.rec(off).size = 2048
			sh.h.head.Store(sh.h.tail.Load() + sp.heap - 1024)
		}},
		{"small log head off a record boundary", func(t *testing.T, sp *Space, c *Cache) {
			sp.sh[0].h.shead.Add(1)
		}},
		{"small log tail past its head", func(t *testing.T, sp *Space, c *Cache) {
			sh := &sp.sh[1]
			sh.h.stail.Store(sh.h.shead.Load() + recAlign)
		}},
		{"small log garbage", func(t *testing.T, sp *Space, c *Cache) {
			sh := &sp.sh[0]
			small := sp.mem[sh.heapOff+sp.heap : sh.heapOff+sp.region]
			for i := range small {
				small[i] = byte(i*131 + 7)
			}
		}},
		{"ghost table garbage", func(t *testing.T, sp *Space, c *Cache) {
			for si := range sp.sh {
				for i := range sp.sh[si].ghost {
					sp.sh[si].ghost[i].Store(0x4100_0000_4100_0041 * uint64(i+1))
				}
			}
		}},
		{"statistics rows past the checked ones", func(t *testing.T, sp *Space, c *Cache) {
			sp.h.statsSlots = 1 << 20 // Stats ranged over the header's word
		}},
		{"index and log garbage", func(t *testing.T, sp *Space, c *Cache) {
			sh := &sp.sh[0]
			for i := range sh.b {
				for j := range slotsPerBucket {
					sh.b[i].slots[j].Store(0x4100_0000_4100_0041 + uint64(i*j))
				}
			}
			heap := sp.mem[sh.heapOff : sh.heapOff+sp.heap]
			for i := range heap {
				heap[i] = byte(i*131 + 7)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, sp, c := damageSpace(t, 2)
			tc.damage(t, sp, c)
			useDamaged(t, sp, c)
			// After the damage was met, the space works again: what was
			// repaired or reset parses, and a new value reads back.
			ctx := context.Background()
			if _, err := c.Set(ctx, "after", []byte("the damage"), SetOptions{}); err != nil {
				t.Fatal(err)
			}
			if v, ok, _ := c.GetInto(nil, "after"); !ok || string(v) != "the damage" {
				t.Fatalf("after the damage: %q %v", v, ok)
			}
		})
	}
}

// A space header whose geometry is impossible is refused by Attach with
// ErrCorrupt. Before, each of these attached or panicked: a journal
// capacity or statistics offset whose sum wraps round (a.Bytes and
// shm.Slice panicked), a heap off a record boundary (every record
// misaligned), a heap too small for the largest record (its MaxValueLen
// underflowed to 4 MiB, and reserve looped for ever on a value that never
// fits), a heap size that wraps the stride's sum round.
func TestAttachRefusesImpossibleGeometry(t *testing.T) {
	cases := []struct {
		name   string
		damage func(h *spaceHeader)
	}{
		{"journal capacity wraps", func(h *spaceHeader) { h.journalCap = 1 << 63; h.journalOff = 1<<63 + 64 }},
		{"statistics wrap", func(h *spaceHeader) { h.statsOff = ^uint64(0) - 4095 }},
		{"heap too small", func(h *spaceHeader) {
			h.shardStride -= h.heapSize - 4096
			h.heapSize = 4096
		}},
		{"heap off a boundary", func(h *spaceHeader) { h.heapSize -= 8; h.shardStride -= 8 }},
		{"stride wraps", func(h *spaceHeader) {
			h.heapSize = ^uint64(0) - (shardHeaderSize + MaxCaches*perCacheSize + uint64(h.buckets)*bucketSize) + 1 + 64
			h.shardStride = 64
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, sp, _ := damageSpace(t, 2)
			tc.damage(sp.h)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panic: %v", p)
					}
				}()
				var sp2 *Space
				if sp2, err = Attach(a); err == nil {
					sp2.Close()
				}
			}()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Attach of a damaged header: %v, want ErrCorrupt", err)
			}
		})
	}
}

// A damaged journal claim (more than a capacity past tail: no writer claims
// that far) made every reader see a lap for ever: each watcher was told
// only OpLost, and the log writer would snapshot on every read. The next
// append replaces it with its own claim; the change after it reaches the
// watcher.
func TestJournalDamagedClaimHeals(t *testing.T) {
	_, sp, c := damageSpace(t, 1)
	got := make(chan Change, 64)
	w := c.Watch("watched", func(ch Change) { got <- ch })
	defer c.Unwatch(w)
	sp.jr.h.claim.Store(sp.jr.h.tail.Load() + 1<<40)
	ctx := context.Background()
	if _, err := c.Set(ctx, "watched", []byte("one"), SetOptions{}); err != nil {
		t.Fatal(err)
	}
	// A watcher whose reader looks at the journal before the Set heals the
	// claim may first be told OpLost (changes may be missing: true of a
	// damaged journal), and it then reads on from where the journal is, which
	// may be past the set. So after an OpLost a second set is made: the
	// watcher must hear one of the two (it heard only OpLost, for ever, before
	// the fix).
	deadline := time.After(10 * time.Second)
	second := false
	for {
		select {
		case ch := <-got:
			if ch.Op == OpLost {
				if !second {
					second = true
					if _, err := c.Set(ctx, "watched", []byte("two"), SetOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				continue
			}
			if ch.Op != OpSet || (string(ch.Value) != "one" && string(ch.Value) != "two") {
				t.Fatalf("the watcher was told %v %q after the damaged claim, want a set", ch.Op, ch.Value)
			}
			return
		case <-deadline:
			t.Fatalf("the watcher was not told a set in 10 s (a second set made: %v)", second)
		}
	}
}

// A damaged durable position (past the journal's tail: the log writer stores
// only positions it read) acknowledged every Always Set at once with nothing
// on disk. It covers nothing: the Set waits (here until its context ends:
// ErrNotDurable), and the log writer's next Durable replaces it.
func TestDamagedDurableAcknowledgesNothing(t *testing.T) {
	_, sp, c, p := newPersistSpace(t, Always)
	j := sp.jr.h
	j.durable.Store(j.tail.Load() + 1<<40)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ok, err := c.Set(ctx, "k", []byte("v"), SetOptions{})
	if !ok || !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Always Set on a damaged durable position: %v %v, want true and ErrNotDurable", ok, err)
	}
	// The log writer logs and syncs it: the next Set is acknowledged.
	done := make(chan error, 1)
	go func() {
		_, err := c.Set(context.Background(), "k2", []byte("v"), SetOptions{})
		done <- err
	}()
	deadline := time.After(5 * time.Second)
	for {
		if _, err := p.Read(100, func(persist.Record) error { return nil }); err != nil && !errors.Is(err, persist.ErrJournalGap) {
			t.Fatal(err)
		}
		p.Logged(p.Position())
		p.Durable(p.Position())
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Always Set after the log writer's Durable: %v", err)
			}
			return
		case <-deadline:
			t.Fatal("the Always Set was not acknowledged in 5 s after Durable")
		case <-time.After(5 * time.Millisecond):
		}
	}
}
