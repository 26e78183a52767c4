package cluster2_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
)

// FuzzConfig gives Validate arbitrary field values: the answer is nil or an
// error wrapping ErrInvalidConfig, never a panic; a configuration Validate
// accepts has the ranges its fields document; String never panics.
func FuzzConfig(f *testing.F) {
	// workers, addr, monitor, heartbeat, maxAge, nanny, memLimit, stop,
	// replace, retries, mode, arena, dataDir, durability, salvage, noHandler
	f.Add(0, "", "", int64(0), int64(0), int64(0), uint64(0), int64(0), int64(0), 0, "", int64(0), "", uint32(0), false, false)
	f.Add(2, "127.0.0.1:0", "127.0.0.1:0", int64(time.Second), int64(-1), int64(-1), uint64(1<<30), int64(time.Second), int64(time.Second), -1, "standalone", int64(1<<20), "/tmp/x", uint32(cache.Always), true, false)
	f.Add(-1, ":8080", ":8080", int64(-5), int64(0), int64(1), uint64(0), int64(-1), int64(-1), 3, "bogus", int64(1<<20-1), "", uint32(99), false, true)
	f.Add(1001, ":1", ":1", int64(1<<62), int64(1<<62), int64(1<<62), ^uint64(0), int64(1<<62), int64(1<<62), 1<<30, "master", int64(-1), "\x00", ^uint32(0), false, false)
	f.Fuzz(func(t *testing.T, workers int, addr, mon string, hb, maxAge, nanny int64, mem uint64,
		stop, replace int64, retries int, mode string, arena int64, dataDir string, dur uint32, salvage, noHandler bool) {
		c := cluster2.Config{
			Workers:           workers,
			Addr:              addr,
			MonitorAddr:       mon,
			HeartbeatInterval: time.Duration(hb),
			MaxAge:            time.Duration(maxAge),
			NannyTolerance:    time.Duration(nanny),
			MemoryLimit:       mem,
			StopTimeout:       time.Duration(stop),
			ReplaceTimeout:    time.Duration(replace),
			ReplaceRetries:    retries,
			ArenaSize:         arena,
			Cache: cluster2.CacheConfig{
				Enabled:    true,
				Mode:       cluster2.CacheMode(mode),
				DataDir:    dataDir,
				Durability: cache.Durability(dur),
				Salvage:    salvage,
			},
		}
		if !noHandler {
			c.Handler = http.NotFoundHandler()
		}
		_ = c.String()
		err := c.Validate()
		if err != nil {
			if !errors.Is(err, cluster2.ErrInvalidConfig) {
				t.Fatalf("Validate() = %v; want nil or an error wrapping ErrInvalidConfig", err)
			}
			return
		}
		switch {
		case noHandler:
			t.Fatal("Validate() = nil without a Handler")
		case workers < 0 || workers > 1000:
			t.Fatalf("Validate() = nil with Workers %d", workers)
		case hb < 0 || stop < 0 || replace < 0:
			t.Fatalf("Validate() = nil with a negative duration (heartbeat %d, stop %d, replace %d)", hb, stop, replace)
		case arena != 0 && arena < 1<<20:
			t.Fatalf("Validate() = nil with ArenaSize %d", arena)
		case mode != "" && cluster2.CacheMode(mode) != cluster2.CacheStandalone && cluster2.CacheMode(mode) != cluster2.CacheMaster:
			t.Fatalf("Validate() = nil with Cache.Mode %q", mode)
		case cache.Durability(dur) > cache.Always:
			t.Fatalf("Validate() = nil with Cache.Durability %d", dur)
		}
	})
}
