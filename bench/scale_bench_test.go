package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"golang.org/x/sys/unix"

	"github.com/cluster2/cluster2/cache"
)

// Scaling figures (issue 8): the same measurement at several sizes, each
// size with its peer in the same run, so that each size gives a ratio.

// ---- memcached over a unix socket (a peer of every cache benchmark) ----

type memcachedStore struct {
	cmd *exec.Cmd
	c   *memcache.Client
}

// openMemcached starts memcached on a unix socket in a temp dir, or skips
// saying how to install it.
func openMemcached(b *testing.B, n int) store {
	path, err := exec.LookPath("memcached")
	if err != nil {
		b.Skip("memcached is not installed: apt-get install memcached")
	}
	sock := filepath.Join(b.TempDir(), "memcached.sock")
	mb := max(n*200*2>>20, 64)
	args := []string{"-s", sock, "-a", "0700", "-m", fmt.Sprint(mb), "-t", "2"}
	if os.Getuid() == 0 {
		args = append(args, "-u", "root")
	}
	cmd := exec.Command(path, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start memcached: %v", err)
	}
	c := memcache.New(sock)
	c.MaxIdleConns = 16
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping() != nil {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatal("memcached did not answer in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &memcachedStore{cmd, c}
}

func (s *memcachedStore) get(dst []byte, key string) ([]byte, bool) {
	it, err := s.c.Get(key)
	if err != nil {
		return dst, false
	}
	return append(dst, it.Value...), true
}
func (s *memcachedStore) set(key string, val []byte) {
	s.c.Set(&memcache.Item{Key: key, Value: val})
}
func (s *memcachedStore) close() {
	s.c.Close()
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// BenchmarkScaleCacheGetHit: a hit at 1k, 100k and 1M keys (16-byte keys,
// 64-byte values, random order fixed in advance, one goroutine), cluster2
// against otter in the same run. The larger sizes miss in the CPU caches.
func BenchmarkScaleCacheGetHit(b *testing.B) {
	peers := []peer{{"cluster2", openCluster2}, {"otter", openOtter}}
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		keys := benchKeys(n)
		order := rand.New(rand.NewPCG(1, 2)).Perm(n)
		for _, p := range peers {
			b.Run(fmt.Sprintf("keys-%s/%s", sizeName(n), p.name), func(b *testing.B) { hitLoop(b, p, keys, order) })
		}
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// BenchmarkScaleRingThroughput: records of 64 B, 1 KiB and 64 KiB from a
// producer goroutine to a consumer goroutine through a 1 MiB ring, against
// a unix socketpair moving the same messages (one write(2) per message) in
// the same run. Reports msgs/s and MB/s.
func BenchmarkScaleRingThroughput(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10} {
		name := map[int]string{64: "64B", 1 << 10: "1KiB", 64 << 10: "64KiB"}[size]
		b.Run("payload-"+name+"/ring", func(b *testing.B) { benchScaleRing(b, size) })
		b.Run("payload-"+name+"/socketpair", func(b *testing.B) { benchScaleSocketpair(b, size) })
	}
}

const scaleRingCap = 1 << 20

func benchScaleRing(b *testing.B, size int) {
	ctx := context.Background()
	pr, c := localRing(b, scaleRingCap)
	msg := make([]byte, size)
	wg := drainUntilStop(b, ctx, c)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	start, n := time.Now(), 0
	for b.Loop() {
		if err := pr.Write(ctx, 1, msg); err != nil {
			b.Fatal(err)
		}
		n++
	}
	pr.Write(ctx, typeStop, nil)
	wg.Wait()
	reportRate(b, start, n)
}

func benchScaleSocketpair(b *testing.B, size int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	msg := make([]byte, size)
	var total int64
	var wg sync.WaitGroup
	done := make(chan int64, 1)
	wg.Go(func() {
		buf := make([]byte, 256<<10)
		var got int64
		for {
			n, err := unix.Read(fds[1], buf)
			if n <= 0 || err != nil {
				done <- got
				return
			}
			got += int64(n)
		}
	})
	b.ReportAllocs()
	b.SetBytes(int64(size))
	start, n := time.Now(), 0
	for b.Loop() {
		for w := 0; w < size; {
			k, err := unix.Write(fds[0], msg[w:])
			if err != nil {
				if err == unix.EINTR || err == unix.EAGAIN {
					continue
				}
				b.Fatal(err)
			}
			w += k
		}
		total += int64(size)
		n++
	}
	unix.Shutdown(fds[0], unix.SHUT_WR)
	if got := <-done; got != total {
		b.Fatalf("read %d bytes; wrote %d", got, total)
	}
	wg.Wait()
	reportRate(b, start, n)
}

// BenchmarkScalePersistAlways: Set with Always durability from 1, 4 and 16
// concurrent writers (group commit), against Redis with appendfsync always
// and the same number of writers, in the same run. Reports sets/s.
func BenchmarkScalePersistAlways(b *testing.B) {
	keys := benchKeys(10_000)
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("writers-%d/cluster2-Always", writers), func(b *testing.B) {
			ps := openPersistSpace(b, b.TempDir(), 32<<20, true)
			defer ps.stop()
			c, err := ps.sp.Use("bench", cache.Options{Persist: true, Durability: cache.Always})
			if err != nil {
				b.Fatal(err)
			}
			runSets(b, writers, func(i int) error {
				_, err := c.Set(context.Background(), keys[i%len(keys)], benchValue, cache.SetOptions{})
				return err
			})
		})
		b.Run(fmt.Sprintf("writers-%d/redis-appendfsync-always", writers), func(b *testing.B) {
			cmd, c := startRedis(b, "--appendonly", "yes", "--appendfsync", "always")
			defer func() { c.Close(); cmd.Process.Kill(); cmd.Wait() }()
			runSets(b, writers, func(i int) error {
				return c.Set(context.Background(), keys[i%len(keys)], benchValue, 0).Err()
			})
		})
	}
}
