package monitor

import (
	"context"
	"encoding/json"
	"time"

	"github.com/cluster2/cluster2/master"
)

// Source is what the monitor shows and controls: the cluster's workers and
// the actions on them. The runtime (package cluster2) provides one for its
// master; tests provide fakes. Its methods are called from the monitor's
// goroutines concurrently and must be safe for that.
//
// A Source may also implement CacheSource, StatusSource and MetricSource;
// the monitor uses whichever it does.
type Source interface {
	// Workers returns every live worker with its state and latest
	// heartbeat, by slot. Before the workers exist it returns nil.
	Workers() []master.WorkerInfo

	// Pause stops worker pid from accepting and waits until it did.
	Pause(ctx context.Context, pid int) error

	// Resume makes a paused worker accept again and waits until it does.
	Resume(ctx context.Context, pid int) error

	// Replace queues worker pid for a graceful replacement and returns.
	Replace(pid int) error

	// RollingRestart replaces every worker, one at a time, and waits.
	RollingRestart(ctx context.Context) error
}

// UpgradeSource is a Source whose master can upgrade itself in place (the
// monitor's POST /debug/api/upgrade; the dashboard shows UpgradeState).
type UpgradeSource interface {
	// PrepareUpgrade checks the new binary and holds the master for the
	// upgrade; exec hands the cluster over and replaces the master's image
	// (it returns only when that failed, and the cluster runs on).
	PrepareUpgrade(ctx context.Context) (exec func() error, err error)

	// UpgradeState returns the last in-place upgrade's state.
	UpgradeState() UpgradeInfo
}

// ScaleSource is a Source whose worker count can be changed (the monitor's
// POST /debug/api/scale?workers=N; the dashboard and the agent-check's
// weight read Scaling).
type ScaleSource interface {
	// Scale sets the target worker count and waits until the cluster has
	// it (master.Master.Scale's rules and errors).
	Scale(ctx context.Context, n int) error

	// Scaling returns the target, the kept workers now and the ceiling.
	Scaling() master.Scaling
}

// UpgradeInfo is the state of a master's last in-place upgrade
// (cluster2.UpgradeStatus is this type).
type UpgradeInfo struct {
	// State is "" (none since the master started), "checking",
	// "handing over", "replacing" (the workers, one at a time), "done" or
	// "failed".
	State   string    `json:"state"`
	From    string    `json:"from,omitempty"` // the build it upgraded from
	To      string    `json:"to,omitempty"`   // the new binary's build
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	Error   string    `json:"error,omitempty"` // why it failed
}

// CacheInfo describes one named cache for the dashboard and /metrics.
type CacheInfo struct {
	Name        string        `json:"name"`
	Persist     bool          `json:"persist"`
	Expire      time.Duration `json:"expire"` // 0: entries never expire
	Hits        uint64        `json:"hits"`
	Misses      uint64        `json:"misses"`
	Loads       uint64        `json:"loads"`
	LoadErrors  uint64        `json:"loadErrors"`
	Evictions   uint64        `json:"evictions"`
	Expirations uint64        `json:"expirations"`
	Entries     int64         `json:"entries"`
	Bytes       int64         `json:"bytes"`

	CounterOps       uint64 `json:"counterOps"`       // Add calls that changed a counter
	CASFailures      uint64 `json:"casFailures"`      // CompareAndSwap calls whose old value did not match
	TagInvalidations uint64 `json:"tagInvalidations"` // InvalidateTag calls
	Clears           uint64 `json:"clears"`           // Clear calls

	StaleServes    uint64 `json:"staleServes"`    // expired values served while a load went on (StaleFor, SoftTimeout)
	FailSafeServes uint64 `json:"failSafeServes"` // expired values served in place of a loader's error or timeout
	Refreshes      uint64 `json:"refreshes"`      // background loads started (StaleFor, RefreshAhead)
	NegativeHits   uint64 `json:"negativeHits"`   // Gets answered "not found" from the cache (NotFoundExpire)
}

// HitRatio returns Hits/(Hits+Misses), or 0 before any lookup: the one
// place the ratio is computed (the dashboard, /debug/api/caches, /status's
// "caches" and /metrics' cluster2_cache_hit_ratio all take it from here).
func (c CacheInfo) HitRatio() float64 {
	if n := c.Hits + c.Misses; n > 0 {
		return float64(c.Hits) / float64(n)
	}
	return 0
}

// MarshalJSON encodes c's fields and its HitRatio, as "hitRatio".
func (c CacheInfo) MarshalJSON() ([]byte, error) {
	type fields CacheInfo // without this method
	return json.Marshal(struct {
		fields
		HitRatio float64 `json:"hitRatio"`
	}{fields(c), c.HitRatio()})
}

// KeyChange is one change of one key of a watched cache.
type KeyChange struct {
	Cache string    `json:"cache"`
	Key   string    `json:"key"`
	Op    string    `json:"op"`              // "set", "del", "expire", "evict" or "lost" (changes missed)
	Value string    `json:"value,omitempty"` // the value stored by a set, cut to 256 bytes
	Time  time.Time `json:"time"`
}

// CacheSource is implemented by a Source whose cluster has shared caches.
type CacheSource interface {
	// Caches returns every named cache with its figures, by name.
	Caches() []CacheInfo

	// WatchCache calls fn for every change of every key of cache name until
	// stop is called. fn must not block for long. An unknown name is an
	// error wrapping ErrNoCache.
	WatchCache(name string, fn func(KeyChange)) (stop func(), err error)
}

// StatusSource is implemented by a Source that aggregates named statuses
// (package status): name → pid → value.
type StatusSource interface {
	Statuses(ctx context.Context) (map[string]map[int]any, error)
}

// Metric is one extra figure for /metrics (ring, WAL, arena …).
type Metric struct {
	Name    string            // full Prometheus name, e.g. "cluster2_wal_bytes"
	Help    string            // one line
	Counter bool              // a counter (monotonic) rather than a gauge
	Labels  map[string]string // may be nil
	Value   float64
}

// MetricSource is implemented by a Source with figures beyond the workers
// and caches. Every call must return the same names with the same label
// names.
type MetricSource interface {
	Metrics() []Metric
}

// PersistInfo is the state of the cluster's persistence (the write-ahead
// log of the persistent caches), for /status, the dashboard and the ECV.
type PersistInfo struct {
	Attached bool      `json:"attached"`        // a live process logs the persistent caches
	Failing  bool      `json:"failing"`         // the log cannot be written: persistent Sets are refused
	Error    string    `json:"error,omitempty"` // why, while failing
	Since    time.Time `json:"since,omitzero"`  // when the current failure began
	Failures uint64    `json:"failures"`        // failures since the cluster started
	LagBytes uint64    `json:"lagBytes"`        // journal bytes not yet in the log

	// DownWhileFailing: the ECV answers down while Failing.
	DownWhileFailing bool `json:"downWhileFailing"`
}

// PersistSource is implemented by a Source whose cluster persists caches.
// Persist returns ok false when nothing is persisted (no data directory).
type PersistSource interface {
	Persist() (info PersistInfo, ok bool)
}

// BridgeInfo is the state of the host's bridge to Redis (package bridge),
// for /status ("bridge"), the dashboard and /metrics (cluster2_bridge_*).
type BridgeInfo struct {
	State  string    `json:"state"`           // "connecting" (never up yet), "up" (tracking) or "down" (reconnecting)
	Since  time.Time `json:"since"`           // when State began
	Addr   string    `json:"addr"`            // Redis's address
	Error  string    `json:"error,omitempty"` // why it is not up
	Caches []string  `json:"caches"`          // the distributed caches

	Invalidations uint64 `json:"invalidations"` // keys Redis invalidated (the host's own writes included)
	Flushes       uint64 `json:"flushes"`       // times every distributed entry was marked stale (loss, reconnect, FLUSHALL)
	Reconnects    uint64 `json:"reconnects"`    // connections made after the first
	Messages      uint64 `json:"messages"`      // pub/sub messages received
	StaleServes   uint64 `json:"staleServes"`   // stale and fail-safe values the distributed caches served
}

// BridgeSource is implemented by a Source whose cluster has a bridge to
// Redis. Bridge returns ok false when it has none.
type BridgeSource interface {
	Bridge() (info BridgeInfo, ok bool)
}
