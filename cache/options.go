package cache

import (
	"fmt"
	"math"
	"time"

	"github.com/cluster2/cluster2/persist"
)

// Options are a named cache's cluster-wide options, fixed by the first Use of
// its name. The zero value is a cache whose entries never expire and are not
// persisted.
type Options struct {
	// Persist asks that every mutation be logged so that the cache survives a
	// restart (see package persist). Default false.
	Persist bool

	// Expire is the time to live of an entry after its Set; 0 means entries
	// never expire. Negative values are invalid.
	Expire time.Duration

	// Durability says when a Set of a persistent cache returns: see the
	// constants. The zero value takes the cluster's (persist.Options); it is
	// ignored unless Persist is set.
	Durability Durability

	// The loader options below change what Get and GetAppend with a loader
	// do; GetInto, Inspect and Keys never return an expired value whatever
	// they say. An expired entry stays in the cache (taking its room) until
	// its horizon, its deadline plus the larger of StaleFor and FailSafeFor;
	// the sweeper and the eviction drop it then. Every load of a key runs in
	// one process of the cluster at a time, as on a miss (see Get).

	// StaleFor is how long after its deadline an entry's value is still
	// returned at once by Get with a loader while one process of the
	// cluster reloads it in the background (stale-while-revalidate; counted
	// in Stats.StaleServes and Stats.Refreshes). 0: an expired entry is a
	// miss.
	StaleFor time.Duration

	// FailSafeFor is how long after its deadline an entry's value is kept
	// to be returned by Get in place of its loader's error or timeout
	// (fail-safe; counted in Stats.FailSafeServes). After a failed load the
	// key is not loaded again for a second: every caller in every process
	// gets the old value meanwhile. 0: a loader's error is returned.
	FailSafeFor time.Duration

	// SoftTimeout: when Get loads a key whose old value is still kept
	// (within StaleFor or FailSafeFor of its deadline) and the load takes
	// longer than this, Get returns the old value (Stats.StaleServes); the
	// load goes on and stores its result. 0: none. It needs StaleFor or
	// FailSafeFor, and must be below HardTimeout when both are set.
	SoftTimeout time.Duration

	// HardTimeout bounds every load: the loader's context ends this long
	// after the load started, and a Get waiting for a load (its own or
	// another process's) returns then with the old value if one is kept
	// (FailSafeFor: a fail-safe serve), else with an error wrapping
	// ErrLoadTimeout. The load, if its loader does not return, goes on and
	// stores its result. 0: a load is bounded by its caller's context only;
	// a background refresh (StaleFor, RefreshAhead, a SoftTimeout's) by one
	// minute.
	HardTimeout time.Duration

	// RefreshAhead is the last part of an entry's life, as a fraction of
	// its time to live (0.2: the last 20%), in which a hit by Get with a
	// loader starts a background refresh (one process of the cluster
	// loads; Stats.Refreshes): a hot key is reloaded before it expires and
	// never misses. From 0 (off) to below 1.
	RefreshAhead float64

	// NotFoundExpire is how long a loader's "not found" (an error that
	// errors.Is ErrNotFound) is remembered: until then Get returns an error
	// wrapping ErrNotFound at once without calling any loader
	// (Stats.NegativeHits). A Set of the key replaces it. 0: not
	// remembered.
	NotFoundExpire time.Duration
}

// Durability is how far a persistent cache's Set goes before it returns. It
// is package persist's type: the log writer, which fsyncs the log, defines
// what each one means.
type Durability = persist.Durability

// Durabilities. The log writer appends every mutation of a persistent cache
// to its write-ahead log; they differ in when the log is fsynced and whether
// Set waits for it.
const (
	DurabilityDefault = persist.DurabilityDefault // the cluster's choice (EverySecond unless configured)
	Never             = persist.Never             // never fsynced by us: the OS writes it back
	EverySecond       = persist.EverySecond       // fsynced every second: a crash loses at most about a second
	Always            = persist.Always            // Set returns after its record is fsynced (group commit)

	// DefaultDurability is what DurabilityDefault means when the cluster
	// sets none: persist.DefaultDurability (EverySecond).
	DefaultDurability = persist.DefaultDurability
)

func (o Options) validate() error {
	if o.Expire < 0 {
		return fmt.Errorf("cache: %w: Expire %v is negative", ErrInvalidConfig, o.Expire)
	}
	if o.Durability > Always {
		return fmt.Errorf("cache: %w: Durability %d is unknown", ErrInvalidConfig, o.Durability)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"StaleFor", o.StaleFor}, {"FailSafeFor", o.FailSafeFor}, {"SoftTimeout", o.SoftTimeout},
		{"HardTimeout", o.HardTimeout}, {"NotFoundExpire", o.NotFoundExpire}} {
		if d.v < 0 {
			return fmt.Errorf("cache: %w: %s %v is negative", ErrInvalidConfig, d.name, d.v)
		}
	}
	switch {
	case !(o.RefreshAhead >= 0 && o.RefreshAhead < 1): // NaN fails too
		return fmt.Errorf("cache: %w: RefreshAhead %v is not a fraction from 0 to below 1", ErrInvalidConfig, o.RefreshAhead)
	case o.SoftTimeout > 0 && o.StaleFor == 0 && o.FailSafeFor == 0:
		return fmt.Errorf("cache: %w: SoftTimeout %v needs StaleFor or FailSafeFor (an old value to return)", ErrInvalidConfig, o.SoftTimeout)
	case o.SoftTimeout > 0 && o.HardTimeout > 0 && o.SoftTimeout >= o.HardTimeout:
		return fmt.Errorf("cache: %w: SoftTimeout %v is not below HardTimeout %v", ErrInvalidConfig, o.SoftTimeout, o.HardTimeout)
	}
	return nil
}

// normalize drops what does not apply (Durability without Persist) and
// rounds RefreshAhead to the millionths the registry keeps.
func (o Options) normalize() Options {
	if !o.Persist {
		o.Durability = DurabilityDefault
	}
	o.RefreshAhead = float64(aheadMillionths(o.RefreshAhead)) / 1e6
	return o
}

// aheadMillionths is a RefreshAhead in the registry's unit.
func aheadMillionths(f float64) uint32 { return uint32(math.Round(f * 1e6)) }

// conflict names the first option in which o differs from the cache's
// cluster-wide options ex, with both values, or "" when they are equal.
func (ex Options) conflict(o Options) string {
	for _, f := range []struct {
		name     string
		was, got any
	}{
		{"Persist", ex.Persist, o.Persist}, {"Durability", ex.Durability, o.Durability}, {"Expire", ex.Expire, o.Expire},
		{"StaleFor", ex.StaleFor, o.StaleFor}, {"FailSafeFor", ex.FailSafeFor, o.FailSafeFor},
		{"SoftTimeout", ex.SoftTimeout, o.SoftTimeout}, {"HardTimeout", ex.HardTimeout, o.HardTimeout},
		{"RefreshAhead", ex.RefreshAhead, o.RefreshAhead}, {"NotFoundExpire", ex.NotFoundExpire, o.NotFoundExpire},
	} {
		if f.was != f.got {
			return fmt.Sprintf("%s is %v cluster-wide, asked %v", f.name, f.was, f.got)
		}
	}
	return ""
}

// keep is how long after its deadline an item stays in the index: the
// larger of StaleFor and FailSafeFor.
func (o Options) keep() time.Duration { return max(o.StaleFor, o.FailSafeFor) }

// String formats o for a log line.
func (o Options) String() string {
	s := fmt.Sprintf("persist=%v expire=%v durability=%v", o.Persist, o.Expire, o.Durability)
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"stale", o.StaleFor}, {"failsafe", o.FailSafeFor}, {"soft", o.SoftTimeout}, {"hard", o.HardTimeout}, {"notfound", o.NotFoundExpire}} {
		if f.v != 0 {
			s += fmt.Sprintf(" %s=%v", f.name, f.v)
		}
	}
	if o.RefreshAhead != 0 {
		s += fmt.Sprintf(" ahead=%v", o.RefreshAhead)
	}
	return s
}

// SetOptions tune one Set. The zero value overwrites and uses the cache's
// Expire.
type SetOptions struct {
	// LeaveIfNotNull stores the value only if the key has none (the Node
	// original's leaveIfNotNull: an existing value is left as it is).
	LeaveIfNotNull bool

	// Expire overrides the cache's time to live for this entry: 0 takes the
	// cache's, a negative value means never.
	Expire time.Duration

	// ExpireAt, when not zero, is the entry's absolute deadline; it overrides
	// Expire. A deadline in the past stores nothing and reports false.
	ExpireAt time.Time

	// Tags are the entry's tags: InvalidateTag of any of them removes it.
	// At most MaxTags (duplicates count once), each 1 to MaxTagLen bytes.
	Tags []string
}

// SpaceOptions size a space at Setup. The zero value takes three quarters of
// what the arena has left.
type SpaceOptions struct {
	// Bytes is the whole space: index, heaps, journal and statistics.
	// Default: 3/4 of the arena's free bytes. At least 1 MiB.
	Bytes int64

	// Shards is the number of independently locked shards, a power of two
	// from 1 to 256. Default: one per 2 MiB of space, from 4 to 64.
	Shards int

	// JournalBytes is the change journal's size (watchers read it), a power
	// of two. Default: Bytes/32, from 256 KiB to 4 MiB.
	JournalBytes int64
}
