package persist

import (
	"context"
	"fmt"
	"time"
)

// Journal is the log side of a cache space: everything a [LogWriter] needs of
// the space it logs, behind one door. Package cache's Space.Journal returns
// one; persist defines it so that it depends on no cache type (the import
// graph runs cache → persist). Its methods are safe for concurrent use and
// across processes (the space's journal header in the arena holds the
// state).
type Journal interface {
	// Attach makes this process the space's log writer, with def as the
	// cluster's default durability, and returns its cursor, positioned where
	// the previous log writer said it had logged everything
	// (Cursor.Logged). It returns ErrWriterBusy while another live process
	// is the log writer.
	Attach(def Durability) (Cursor, error)

	// Attached reports whether a live process is the space's log writer.
	Attached() bool

	// Restore returns a Restorer that applies logged mutations to the space
	// without journaling them again. While it is open this process journals
	// nothing; it must be closed.
	Restore() Restorer

	// Scan calls fn for the definition (OpDefine) of every persistent
	// cache, then for every live entry of those caches (OpSet, or
	// OpSetMeta for a value with flags, with its deadline). It sees each shard at one instant: with the journal records
	// that follow the position read before the scan, a consistent snapshot.
	Scan(ctx context.Context, fn func(Mutation) error) error

	// Define returns the definition (OpDefine: name, Expire, Durability) of
	// the cache with id, as in Record.Cache.
	Define(id uint32) (Mutation, bool)

	// LiveBytes returns the bytes of the live entries of every persistent
	// cache (what a snapshot would hold).
	LiveBytes() int64

	// Stats returns the log writer's figures, from any process.
	Stats() Stats
}

// Cursor is the attached log writer's handle on the journal: its read
// position, and the marks it publishes to the cache's writers (logged,
// durable, failing) and to /status (the counters). One process at a time
// holds one (Journal.Attach); it is not safe for concurrent use.
type Cursor interface {
	// Read calls fn for up to max journal records of persistent caches from
	// the read position on, and advances. It returns the number of records
	// read (of any cache) and ErrJournalGap if records were overwritten
	// before it read them, or a writer could not journal a change: the
	// position then jumps to the end and the caller must snapshot (calling
	// CoverGaps before the scan). A Record's Key and Value are valid only
	// during the call.
	Read(max int, fn func(Record) error) (int, error)

	// Position returns the journal position up to which the cursor has
	// read.
	Position() uint64

	// Tail returns the journal's current end.
	Tail() uint64

	// Skip moves the read position to the journal's end, when what lies
	// before is already covered (after a replay, or a snapshot taken because
	// of a gap), and returns it.
	Skip() uint64

	// Rewind moves the read position back to pos (at most the current one),
	// after the log lost what was written past pos (a write or fsync that
	// failed): the records from pos on are read again, or Read reports
	// ErrJournalGap if the journal overwrote them since. It lowers the
	// logged mark to pos too, so that a log writer that takes over re-reads
	// them.
	Rewind(pos uint64)

	// Wait sleeps until the journal has records past the read position, an
	// Always writer asks, the journal fills past a quarter, or timeout
	// passes.
	Wait(timeout time.Duration)

	// Logged records that every record before pos is in the log, so that a
	// restarted log writer resumes there, and releases throttled writers.
	Logged(pos uint64)

	// Durable records that every record before pos is on disk and wakes the
	// Always writers waiting for it. In the terminology of the Go memory
	// model, Durable synchronizes before the return of every Set whose
	// record ends at or before pos.
	Durable(pos uint64)

	// SetFailing records that the log cannot be written (err: the error,
	// whose errno /status shows) or, with nil, that it can again. While it
	// is failing, Set and Del of persistent caches are refused and Always
	// writers that wait return. It reports whether the state changed.
	SetFailing(err error) bool

	// CoverGaps returns a function that records, once the snapshot it was
	// called before is complete, that the snapshot covers every change that
	// could not be journaled up to the call (Read stops reporting them as a
	// gap). Call it before the snapshot's scan begins.
	CoverGaps() func()

	// CountLogged, CountSync and CountSnapshot add to the figures of Stats:
	// records and bytes appended to the log, one fsync that took d, one
	// snapshot (gap: taken because the journal lapped).
	CountLogged(records, bytes int)
	CountSync(d time.Duration)
	CountSnapshot(gap bool)

	// Detach gives the log writer role up: Always writers stop waiting for
	// this process.
	Detach()
}

// Restorer applies logged mutations to a cache space (Journal.Restore). It
// is one replay's, used from one goroutine, and must be closed.
type Restorer interface {
	// Apply applies one mutation: a definition opens (or creates) the
	// cache, a set stores the value unless its deadline passed, anything
	// else deletes the key. A mutation of a cache the restore has not seen
	// defined is an error.
	Apply(ctx context.Context, m Mutation) error

	// Close ends the restore: the process journals again.
	Close()
}

// Durability is how far a persistent cache's Set goes before it returns
// (package cache's Durability is this type). The log writer appends every
// mutation of a persistent cache to its log; the durabilities differ in
// when the log is fsynced and whether Set waits for it.
type Durability uint32

// Durabilities (format: a definition record's dur byte holds one).
const (
	DurabilityDefault Durability = iota // the cluster's choice (EverySecond unless configured)
	Never                               // never fsynced by us: the OS writes it back
	EverySecond                         // fsynced every second: a crash loses at most about a second
	Always                              // Set returns after its record is fsynced (group commit)
)

// DefaultDurability is what DurabilityDefault means when the cluster sets no
// default of its own (Options.Durability, cluster2.CacheConfig.Durability):
// the one copy of that default, which cache re-exports.
const DefaultDurability = EverySecond

// String returns the durability's name.
func (d Durability) String() string {
	switch d {
	case DurabilityDefault:
		return "default"
	case Never:
		return "never"
	case EverySecond:
		return "every-second"
	case Always:
		return "always"
	}
	return fmt.Sprintf("Durability(%d)", uint32(d))
}

// Op says what a Mutation or a Record does. Its values are the log record's
// op byte (format: changing one bumps the log's magic).
type Op uint8

// Ops.
const (
	OpDefine Op = 1 // a persistent cache was defined (name, Expire, Durability); precedes its other ops
	OpSet    Op = 2 // a value was stored
	OpDel    Op = 3 // the key was deleted
	OpExpire Op = 4 // the key's time to live ran out
	OpEvict  Op = 5 // the key was evicted to make room

	// OpSetMeta is a value stored with what its cache keeps besides the
	// bytes (package cache: a counter, an entry's tags): Flags says what,
	// and Value holds the cache's encoding of both (for a tagged entry its
	// tag list, then the value). A reader that knows only OpSet refuses it
	// as an unknown op rather than read the encoding as the value.
	OpSetMeta Op = 6
)

// String returns the op's name.
func (o Op) String() string {
	switch o {
	case OpDefine:
		return "define"
	case OpSet:
		return "set"
	case OpDel:
		return "del"
	case OpExpire:
		return "expire"
	case OpEvict:
		return "evict"
	case OpSetMeta:
		return "set-meta"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Mutation is one change of a persistent cache as the log holds it and a
// replay applies it: a plain value (the zero value is no valid mutation),
// which owns its bytes.
type Mutation struct {
	Op         Op
	Cache      string        // the cache's name
	Expire     time.Duration // OpDefine: the cache's Expire
	Durability Durability    // OpDefine: the cache's Durability (DurabilityDefault: the cluster's)
	Key        string        // not for OpDefine
	Value      []byte        // OpSet and OpSetMeta: the value; OpDefine: the cache's further options, opaque here (package cache's encoding; none for most caches)
	ExpireAt   int64         // OpSet and OpSetMeta: absolute deadline, unix nanoseconds; 0 = never
	Flags      uint8         // OpSetMeta: the cache's flags of the value (not 0), opaque to the log
}

// Record is one journal record of a persistent cache as Cursor.Read hands
// it over. Key and Value point into the cursor's buffer: they are valid only
// during the call.
type Record struct {
	Op       Op
	Cache    uint32 // the cache's id: see Journal.Define
	Key      []byte // OpDefine: the cache's name
	Value    []byte // OpSet and OpSetMeta only
	ExpireAt int64  // OpSet and OpSetMeta: absolute deadline, unix nanoseconds; 0 = never
	Flags    uint8  // OpSetMeta: the cache's flags of the value
	End      uint64 // the journal position just past the record
}

// Stats are the log writer's figures (Journal.Stats), kept in the arena so
// that any process (the monitor in the master) reads those of a cache
// manager process.
type Stats struct {
	Attached  bool          // a live process is the log writer
	Records   uint64        // records appended to the log
	Bytes     uint64        // bytes appended to the log
	Syncs     uint64        // fsyncs of the log
	SyncTime  time.Duration // total time spent in them
	Snapshots uint64        // snapshots written
	Gaps      uint64        // times the journal lapped the log writer (each cost a snapshot)
	Lag       uint64        // journal bytes not yet in the log

	// Failing is the error while the log cannot be written (nil when it
	// can): it wraps package cache's ErrPersistFailing and names the cause,
	// such as syscall.ENOSPC. Persistent changes are refused meanwhile.
	Failing      error
	FailingSince time.Time // when the current failure began (zero: none)
	Failures     uint64    // times the log began failing
	GapRequests  uint64    // changes that could not be journaled (each costs a snapshot)
}
