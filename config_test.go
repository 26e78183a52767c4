package cluster2_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
	"github.com/cluster2/cluster2/persist"
	"github.com/cluster2/cluster2/ring"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/worker"
)

// TestOneInvalidConfigError checks that a bad option of every layer is the
// one invalid-config error: each package's ErrInvalidConfig is the same value
// as cluster2.ErrInvalidConfig, and each constructor's error wraps it and
// names its package and field.
func TestOneInvalidConfigError(t *testing.T) {
	for name, e := range map[string]error{
		"master": master.ErrInvalidConfig, "worker": worker.ErrInvalidConfig, "shm": shm.ErrInvalidConfig,
		"ring": ring.ErrInvalidConfig, "cache": cache.ErrInvalidConfig, "persist": persist.ErrInvalidConfig,
		"emitter": emitter.ErrInvalidConfig, "monitor": monitor.ErrInvalidConfig,
	} {
		if e != cluster2.ErrInvalidConfig {
			t.Errorf("%s.ErrInvalidConfig is not cluster2.ErrInvalidConfig", name)
		}
	}
	ctx := context.Background()
	a, err := shm.Create(shm.Options{})
	if err != nil {
		t.Skipf("no arena here: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	for _, tc := range []struct {
		layer, field string
		do           func() error
	}{
		{"cluster2", "Cache.Mode", cluster2.Config{Handler: clustertest.Handler(), Cache: cluster2.CacheConfig{Mode: "x"}}.Validate},
		{"master", "Workers", cluster2.Config{Handler: clustertest.Handler(), Workers: 1001}.Validate},
		{"master", "Listener", func() error { _, err := master.Start(ctx, master.Config{}); return err }},
		{"shm", "Size", func() error { _, err := shm.Create(shm.Options{Size: 10}); return err }},
		{"ring", "capacity", func() error { _, err := ring.Init(a, 0, 3); return err }},
		{"cache", "Shards", func() error { _, err := cache.Setup(ctx, a, cache.SpaceOptions{Bytes: 8 << 20, Shards: 3}); return err }},
		{"persist", "Durability", func() error { _, err := persist.Open(t.TempDir(), persist.Options{Durability: 99}); return err }},
		{"emitter", "RingSize", func() error { _, err := emitter.New(&emitter.Options{RingSize: 1000}); return err }},
		{"monitor", "ECV.Mode", func() error {
			_, err := monitor.New(nil, monitor.Options{ECV: monitor.ECVOptions{Mode: "bogus"}})
			return err
		}},
	} {
		err := tc.do()
		if !errors.Is(err, cluster2.ErrInvalidConfig) {
			t.Errorf("%s: bad %s: err = %v; want cluster2.ErrInvalidConfig", tc.layer, tc.field, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, tc.layer+": ") || !strings.Contains(msg, tc.field) {
			t.Errorf("%s: bad %s: err = %q; want it to name the package and the field", tc.layer, tc.field, msg)
		}
	}
}

// TestDefaultConfigIsTheOwnersDefaults checks that DefaultConfig shows every
// default, each taken from the one constant of the package that applies the
// setting, and that String logs them.
func TestDefaultConfigIsTheOwnersDefaults(t *testing.T) {
	c := cluster2.DefaultConfig()
	m := master.Config{}.WithDefaults()
	for _, tc := range []struct {
		field     string
		got, want any
	}{
		{"Workers", c.Workers, master.DefaultWorkers()},
		{"Workers (master)", m.Workers, master.DefaultWorkers()},
		{"Addr", c.Addr, cluster2.DefaultAddr},
		{"MonitorAddr", c.MonitorAddr, monitor.DefaultAddr},
		{"HeartbeatInterval", c.HeartbeatInterval, worker.DefaultHeartbeatInterval},
		{"HeartbeatInterval (master)", m.HeartbeatInterval, worker.DefaultHeartbeatInterval},
		{"NannyTolerance", c.NannyTolerance, master.DefaultNannyTolerance},
		{"MaxAge", c.MaxAge, master.DefaultMaxAge},
		{"StopTimeout", c.StopTimeout, worker.DefaultStopTimeout},
		{"StopTimeout (master)", m.StopTimeout, worker.DefaultStopTimeout},
		{"ReplaceTimeout", c.ReplaceTimeout, worker.DefaultReplaceTimeout},
		{"ReplaceTimeout (master)", m.ReplaceTimeout, worker.DefaultReplaceTimeout},
		{"ReplaceRetries", c.ReplaceRetries, master.DefaultReplaceRetries},
		{"MaxRequests (off)", c.MaxRequests, 0},
		{"MaxRequests (master, off)", m.MaxRequests, 0},
		{"HungRequests", c.HungRequests, master.DefaultHungRequests},
		{"HungRequests (master)", m.HungRequests, master.DefaultHungRequests},
		{"HungWindow", c.HungWindow, master.DefaultHungWindow},
		{"Server.RequestTimeout (off)", c.Server.RequestTimeout, time.Duration(0)},
		{"ArenaSize", c.ArenaSize, int64(shm.DefaultSize)},
		{"Cache.Mode", c.Cache.Mode, cluster2.CacheMaster},
		{"Cache.Durability", c.Cache.Durability, cache.DefaultDurability},
		{"Server.IdleTimeout", c.Server.IdleTimeout, worker.DefaultIdleTimeout},
		{"Logger set", c.Logger != nil, true},
		{"ShouldKill left to Listen (it depends on MaxAge)", c.ShouldKill == nil, true},
	} {
		if tc.got != tc.want {
			t.Errorf("DefaultConfig().%s = %v; want %v", tc.field, tc.got, tc.want)
		}
	}
	s := c.String()
	for _, want := range []string{"heartbeat=5s", "maxAge=72h0m0s", "nanny=3m0s", "stop=1m0s", "replace=1m0s×3", "arena=67108864", "mode=master", "maxRequests=0+0", "hung=3/1m0s", "request=0s"} {
		if !strings.Contains(s, want) {
			t.Errorf("DefaultConfig().String() = %q; want it to contain %q", s, want)
		}
	}
	if err := (cluster2.Config{Handler: clustertest.Handler()}).Validate(); err != nil {
		t.Errorf("zero Config with a Handler: Validate() = %v; want nil", err)
	}
}

// Config.Executable defaults to master.DefaultExe (the path resolved at
// start), the path every child is executed from.
func TestExecutableDefault(t *testing.T) {
	if got, want := cluster2.DefaultConfig().Executable, master.DefaultExe(); got != want {
		t.Errorf("DefaultConfig().Executable = %q; want %q", got, want)
	}
}

func TestConfigRedis(t *testing.T) {
	h := http.NotFoundHandler()
	for _, c := range []cluster2.Config{
		{Handler: h, Cache: cluster2.CacheConfig{Enabled: true, Redis: cluster2.RedisConfig{Caches: []string{"a"}}}},                           // no address
		{Handler: h, Cache: cluster2.CacheConfig{Redis: cluster2.RedisConfig{Addr: "127.0.0.1:6379", Caches: []string{"a"}}}},                  // cache off
		{Handler: h, Cache: cluster2.CacheConfig{Enabled: true, Redis: cluster2.RedisConfig{Addr: "127.0.0.1:6379", Caches: []string{"a:b"}}}}, // a bad name
		{Handler: h, Cache: cluster2.CacheConfig{Enabled: true, Redis: cluster2.RedisConfig{Addr: "127.0.0.1:6379", Timeout: -1}}},
	} {
		if err := c.Validate(); !errors.Is(err, cluster2.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", c.Cache.Redis, err)
		}
	}
	ok := cluster2.Config{Handler: h, Cache: cluster2.CacheConfig{Enabled: true, Redis: cluster2.RedisConfig{Addr: "127.0.0.1:6379", Caches: []string{"a"}}}}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
	// Events across hosts need no cache.
	if err := (cluster2.Config{Handler: h, Cache: cluster2.CacheConfig{Redis: cluster2.RedisConfig{Addr: "127.0.0.1:6379"}}}).Validate(); err != nil {
		t.Error(err)
	}
}
