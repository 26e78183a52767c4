package cache

import (
	"fmt"
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
	return nil
}

// normalize drops what does not apply: Durability without Persist.
func (o Options) normalize() Options {
	if !o.Persist {
		o.Durability = DurabilityDefault
	}
	return o
}

// String formats o for a log line.
func (o Options) String() string {
	return fmt.Sprintf("persist=%v expire=%v durability=%v", o.Persist, o.Expire, o.Durability)
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
