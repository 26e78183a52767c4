package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/shm"
)

// persistSpace is a cache space with a running log writer on a
// fresh data directory.
type persistSpace struct {
	a    *shm.Arena
	sp   *cache.Space
	m    *persist.LogWriter
	stop func()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openPersistSpace(b *testing.B, dir string, bytes int64, replay bool) *persistSpace {
	a, err := shm.Create(shm.Options{Size: bytes + bytes/4 + 4<<20})
	if err != nil {
		b.Fatal(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: bytes})
	if err != nil {
		b.Fatal(err)
	}
	m, err := persist.Open(dir, persist.Options{Logger: quietLogger(), CompactMin: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Replay(context.Background(), sp.Journal()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	ps := &persistSpace{a: a, sp: sp, m: m}
	ps.stop = func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		m.Close()
		sp.Close()
		a.Close()
	}
	return ps
}

// BenchmarkPersistSet: Set of a 64-byte value into a persistent cache with
// each durability, a non-persistent cache as the baseline, and Redis with
// appendonly (everysec, always) over a unix socket as the peer. Always runs 4
// concurrent writers (group commit); the others one. Reports sets/s.
func BenchmarkPersistSet(b *testing.B) {
	keys := benchKeys(10_000)
	cases := []struct {
		name    string
		opts    cache.Options
		writers int
	}{
		{"non-persistent", cache.Options{}, 1},
		{"Never", cache.Options{Persist: true, Durability: cache.Never}, 1},
		{"EverySecond", cache.Options{Persist: true, Durability: cache.EverySecond}, 1},
		{"Always-4-writers", cache.Options{Persist: true, Durability: cache.Always}, 4},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ps := openPersistSpace(b, b.TempDir(), 32<<20, true)
			defer ps.stop()
			c, err := ps.sp.Use("bench", tc.opts)
			if err != nil {
				b.Fatal(err)
			}
			runSets(b, tc.writers, func(i int) error {
				_, err := c.Set(context.Background(), keys[i%len(keys)], benchValue, cache.SetOptions{})
				return err
			})
			if st := ps.sp.Journal().Stats(); tc.opts.Durability == cache.Always && st.Syncs > 0 {
				b.ReportMetric(float64(st.Records)/float64(st.Syncs), "sets/fsync")
				b.ReportMetric(float64(st.SyncTime.Microseconds())/float64(st.Syncs), "µs/fsync")
			}
		})
	}
	for _, fsync := range []string{"everysec", "always"} {
		writers := 1
		if fsync == "always" {
			writers = 4
		}
		b.Run(fmt.Sprintf("redis-appendfsync-%s-%d-writers", fsync, writers), func(b *testing.B) {
			cmd, c := startRedis(b, "--appendonly", "yes", "--appendfsync", fsync)
			defer func() { c.Close(); cmd.Process.Kill(); cmd.Wait() }()
			runSets(b, writers, func(i int) error {
				return c.Set(context.Background(), keys[i%len(keys)], benchValue, 0).Err()
			})
		})
	}
}

// runSets runs set from exactly writers goroutines for b.N calls in all and
// reports sets/s.
func runSets(b *testing.B, writers int, set func(i int) error) {
	b.ReportAllocs()
	start := time.Now()
	if writers == 1 {
		i := 0
		for b.Loop() {
			if err := set(i); err != nil {
				b.Fatal(err)
			}
			i++
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for range writers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= b.N {
						return
					}
					if err := set(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sets/s")
}

// BenchmarkPersistReplay: start-up replay of a log of 1,000,000 records (100,000
// keys, each set 10 times) into a fresh arena. One op is one whole replay;
// records/s is reported.
func BenchmarkPersistReplay(b *testing.B) {
	const records, distinct = 1_000_000, 100_000
	dir := b.TempDir()
	keys := benchKeys(distinct)
	ps := openPersistSpace(b, dir, 64<<20, true)
	c, err := ps.sp.Use("bench", cache.Options{Persist: true, Durability: cache.Never})
	if err != nil {
		b.Fatal(err)
	}
	for i := range records {
		if _, err := c.Set(context.Background(), keys[i%distinct], benchValue, cache.SetOptions{}); err != nil {
			b.Fatal(err)
		}
		if i%50_000 == 0 {
			time.Sleep(5 * time.Millisecond) // let the log writer keep up: a lapped journal would snapshot
		}
	}
	ps.stop()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		a, err := shm.Create(shm.Options{Size: 96 << 20})
		if err != nil {
			b.Fatal(err)
		}
		sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 64 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m, err := persist.Open(dir, persist.Options{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Replay(context.Background(), sp.Journal()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r := m.Recovery()
		if got := r.LogEntries + r.SnapshotEntries; got < records {
			b.Fatalf("replayed %d records; want %d", got, records)
		}
		m.Close()
		sp.Close()
		a.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
