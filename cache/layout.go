package cache

import (
	"sync/atomic"

	"github.com/cluster2/cluster2/shm"
)

// Format constants: changing any, or any struct below, bumps spaceVersion.
const (
	spaceMagic uint64 = 0x45484341_43324c43 // "CL2CACHE"
	// 3: a loading record's exp holds its load id (loading records move, never evicted); the journal header's failing and gap-request words.
	// 4: an item's owner word holds its item flags (itemCounter, itemTagged) and a tagged item's tag list follows its value
	// inside the record; statsRow's counter ops and CAS failures (8 bytes left free); the space header's opCounts.
	// 5: regEntry grew to 128 bytes (the loader options: stale, fail-safe, timeouts, refresh ahead, not-found TTL) and
	// with it the space header to 12 KiB; recHdr.life (an item's time to live at its Set) in the header's former
	// padding; kindNegative; statsRow grew to 96 bytes (stale serves, fail-safe serves, refreshes, negative hits).
	// 6: eviction is S3-FIFO (issue 16 item 6): each shard's heap is two logs, the small FIFO (its last tenth)
	// and the main FIFO, with shardHeader's small head and tail; a ghost table of recently evicted hashes
	// sits between the buckets and the heap (buckets/8 lines, in the shard stride); a slot word's low two
	// bits are its record's access count (readers raise it; recHdr.ref keeps only refDead).
	// 7: the space header's tracking epoch (Space.BeginTracking), in its former padding.
	spaceVersion uint32 = 7

	// SpaceVersion is the version of the space's format (spaceVersion):
	// part of the build's layout (cluster2.Layout's Cache); Attach refuses
	// a space of another version.
	SpaceVersion = spaceVersion

	// MaxCaches is the number of named caches one space can hold.
	MaxCaches = 64

	// MaxNameLen is the longest cache name, in bytes.
	MaxNameLen = 48

	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 1024

	// hardMaxValueLen caps values whatever the space's size; a space's own
	// limit (Space.MaxValueLen) is a quarter of a shard's heap below that.
	hardMaxValueLen = 4 << 20

	slotsPerBucket = 7
	maxProbe       = 8 // buckets a key may live in: its home and the next 7
	recHeader      = 40
	recAlign       = 64 // records start on a cache line: a 16-byte key and a 64-byte value take two

	spaceHeaderSize = 12288 // 192 bytes of words, the registry (64 × 128), ops (64 × 16), padding
	shardHeaderSize = 128
	perCacheSize    = 32
	bucketSize      = 64
	journalHdrSize  = 4096
)

// Record kinds.
const (
	kindFree     = 0 // never a valid record header
	kindItem     = 1
	kindLoading  = 2
	kindFailed   = 3
	kindFiller   = 4
	kindNegative = 5            // a loader's "not found", cached for the cache's NotFoundExpire: no value; exp as an item's
	kindLast     = kindNegative // the highest kind a writer writes (tailOK refuses any other)
)

// Item flags: the owner word of a kindItem record (a loading or failed
// record keeps its owner there). Written with the record, never changed.
// The lock-free hit path does not read them: a counter reads as its 8
// bytes, a tagged item as its value.
const (
	itemCounter = 1 // the value is a counter (Add): 8 bytes, a little-endian int64
	itemTagged  = 2 // a tag list (see tags.go) follows the value: size covers it, vlen does not
)

// Tag bounds (a tag list is at most 1 + MaxTags*(1+MaxTagLen) bytes).
const (
	// MaxTags is the most tags one entry carries.
	MaxTags = 8

	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = 64
)

// spaceHeader is the first block of the space region. Fields above lock are
// written once by Setup before the region is published and read-only after.
type spaceHeader struct {
	magic       uint64
	version     uint32
	shards      uint32 // S, a power of two
	buckets     uint32 // B per shard, a power of two
	_           uint32
	heapSize    uint64 // bytes of log per shard, a multiple of 8
	shardStride uint64 // bytes from one shard block to the next
	shardsOff   uint64 // arena offset of shard 0
	journalOff  uint64 // arena offset of the journal header
	journalCap  uint64 // journal data bytes, a power of two
	statsOff    uint64 // arena offset of the per-slot statistics rows
	statsSlots  uint32 // rows (the arena's slot count)
	_           [52]byte
	lock        shm.Lock      // registry lock: guards count and registry
	count       atomic.Uint32 // published registry entries; stored after the entry (release)
	sweeper     atomic.Uint32 // owner generation of the process that sweeps expired entries
	// tracking is the distributed caches' tracking epoch (Space.BeginTracking,
	// EndTracking; remote.go's "Tracking"): odd while the second tier's
	// changes reach the arena's invalidations, even while they may not;
	// larger at every change of state. Written (CAS) by the process that
	// tracks (the master's bridge), read by every load of a distributed
	// cache. Zero in a new space: not tracking.
	tracking atomic.Uint64
	_        [40]byte
	registry [MaxCaches]regEntry
	ops      [MaxCaches]opCounts // version 4
	_        [spaceHeaderSize - 192 - MaxCaches*regEntrySize - MaxCaches*opCountsSize]byte
}

const regEntrySize = 128

// regEntry names one cache and holds its cluster-wide options. Written once
// under the registry lock, then published by count; read-only afterwards (a
// process reads them once, at Use, into its Cache; the sweeper and the tail
// read keep of any cache whose records they meet). Durations are
// nanoseconds, 0 = off.
type regEntry struct {
	name       [MaxNameLen]byte // NUL-padded
	expire     int64            // default time to live, nanoseconds; 0 = none
	persist    uint32           // 1 if the cache's mutations are logged
	durability uint32           // a Durability; 0 = the cluster's default
	// The loader options (stale serving, fail-safe, timeouts, refresh
	// ahead, negative caching; Options says what each does). stale and
	// failSafe make an expired item stay in the index until its horizon,
	// exp + max(stale, failSafe): the sweeper and the tail drop it only
	// then (pastHorizon).
	stale    int64  // Options.StaleFor
	failSafe int64  // Options.FailSafeFor
	soft     int64  // Options.SoftTimeout
	hard     int64  // Options.HardTimeout
	notFound int64  // Options.NotFoundExpire
	ahead    uint32 // Options.RefreshAhead in millionths
	_        uint32
	_        [16]byte // free: the next option
}

// shardHeader heads one shard. Everything but ev is written under lock; ev is
// the Event loader waiters sleep on (woken when a loading record resolves).
//
// head and tail are the main log's, shead and stail the small log's (S3-FIFO,
// see doc.go # Eviction); both pairs under lock, read by repair and Verify.
type shardHeader struct {
	lock     shm.Lock
	head     atomic.Uint64 // main log: virtual position one past the newest record
	tail     atomic.Uint64 // main log: virtual position of the oldest record
	ev       shm.Event
	repairs  atomic.Uint64 // times a dead writer's work was repaired
	moved    atomic.Uint64 // main records given a second chance (reinserted at the main head)
	shead    atomic.Uint64 // small log: virtual position one past the newest record (version 6)
	stail    atomic.Uint64 // small log: virtual position of the oldest record
	promoted atomic.Uint64 // small records read while there, copied to the main head
	ghostHit atomic.Uint64 // new records written to main because the ghost table knew their hash
	_        [shardHeaderSize - 80]byte
}

// ghostWays is the number of entries of one ghost line (64 bytes). A ghost
// entry (u64) is fp (32 bits: hash>>32, never 0 in a used entry: ORed with 1)
// << 32 | the main log's head/64 when it was stored (32 bits, modular); 0 is
// an empty entry. Only lock holders read or write it; any bytes at all are a
// valid table (an entry only decides which log a new record goes to).
const ghostWays = 8

// perCache counts one cache's records in one shard, under the shard lock.
type perCache struct {
	entries     atomic.Int64
	bytes       atomic.Int64
	evictions   atomic.Uint64
	expirations atomic.Uint64
}

// bucket is one cache line of the index.
type bucket struct {
	seq   atomic.Uint32 // seqlock: odd while a writer changes this bucket's slots
	flags atomic.Uint32 // bucketOverflow
	slots [slotsPerBucket]atomic.Uint64
}

const bucketOverflow = 1

// recHdr.ref bits. refDead is a hint set under the lock once no slot points at
// the record any more (a record is never pointed at again), so that the tail
// can free it without looking it up in the index. A record without the hint
// may still be dead: the index alone says what is live.
const refDead = 0x80

// Slot word access counts (S3-FIFO's frequency): the low two bits of a slot
// word, free because records start on recAlign boundaries. A lock-free hit
// raises them with one CompareAndSwap of the word it read, only while they
// are below freqMax (a hot record's word is not written again until the
// main tail lowers it); lock holders read them and store words with the
// count they choose (0 for a new record, the old count for an overwrite,
// count-1 for a second chance).
const (
	freqMask = 3
	freqMax  = 3
)

// recHdr is a record's 40-byte header in the log. Written by the writer under
// the shard lock before head moves past it; never changed afterwards except
// ref (the refDead hint), which only lock holders touch.
//
// life took the 4 bytes of padding between owner and hash (spaceVersion 5):
// records kept their size and their lines. An item's life is its time to live
// when it was set (exp minus the time of its Set, in milliseconds, saturating
// at 2^32-1, about 49.7 days; 0 for an item that never expires): with exp it
// tells how far into its life an item is, for refresh ahead, without a set
// time of 8 bytes.
type recHdr struct {
	size  uint32 // bytes of the whole record, a multiple of 8
	vlen  uint32
	klen  uint16
	kind  uint8
	ref   uint8  // the refDead hint, under the shard lock (the access count is in the slot word)
	cache uint32 // cache id (registry index)
	owner uint32 // loading: the loader's owner generation; item: its item flags
	life  uint32 // item: its time to live at its Set, milliseconds (see above)
	hash  uint64
	exp   int64 // unix nanoseconds; 0 = never
}

// statsRow is one process's published counters for one cache.
type statsRow struct {
	hits       atomic.Uint64
	misses     atomic.Uint64
	loads      atomic.Uint64
	loadErrors atomic.Uint64
	token      atomic.Uint32 // the owner generation that wrote the row
	_          uint32
	counterOps atomic.Uint64 // Add calls that changed a counter
	casFails   atomic.Uint64 // CompareAndSwap calls whose old value did not match
	_          [8]byte
	// version 5: the loader options' counters (Stats says what each counts).
	staleServes    atomic.Uint64
	failSafeServes atomic.Uint64
	refreshes      atomic.Uint64
	negativeHits   atomic.Uint64
}

// statsRowSize is 96, not 128: the rows of 64 slots × 64 caches take 384 KiB
// of every space, and a 1 MiB space must still hold four shards.
const statsRowSize = 96

// opCounts counts one cache's rare whole-cache operations, in the space
// header (callers add with one atomic add each: they walk the index anyway).
type opCounts struct {
	tagInvals atomic.Uint64 // InvalidateTag calls
	clears    atomic.Uint64 // Clear calls
}

const opCountsSize = 16

// journalHdr heads the change journal. Its words are grouped by who writes
// them, each group on its own 128-byte line pair, so that a writer appending
// a record does not pull a line the log writer or a sleeper just wrote (on a
// VM a cache line crossing cores costs 100+ ns).
type journalHdr struct {
	// Writers (every process, under lock); read by the log writer and watchers.
	lock  shm.Lock
	tail  atomic.Uint64 // virtual position one past the newest published record
	claim atomic.Uint64 // virtual position the writer may be writing up to
	_     [shm.PadLine - 24]byte

	// Watchers sleep here; every append reads it and wakes them.
	ev shm.Event
	_  [shm.PadLine - 8]byte

	// The log writer's; every persistent Set reads logged (throttle) and writer.
	durable atomic.Uint64 // every record below is on disk (per its durability)
	logged  atomic.Uint64 // every record below is in its log (restart point)
	writer  atomic.Uint32 // the log writer's owner generation; 0 = none
	defDur  atomic.Uint32 // the cluster's default Durability, set by the log writer
	failing atomic.Uint32 // the errno (or 1) while the log writer cannot write its log; 0 = it can
	_       uint32
	gapReq  atomic.Uint64 // appends of persistent caches that gave up (writers add)
	gapDone atomic.Uint64 // gapReq as read before the log writer's last completed snapshot
	_       [shm.PadLine - 48]byte

	// Always writers sleep here until durable passes their record.
	durEv shm.Event
	_     [shm.PadLine - 8]byte

	// The log writer sleeps here; Always writers (and throttled ones) wake it.
	pev shm.Event
	_   [shm.PadLine - 8]byte

	watchers [MaxCaches]atomic.Int32 // processes watching each cache
	wstats   writerCounters          // written by the log writer, read by anyone
	_        [journalHdrSize - 5*shm.PadLine - MaxCaches*4 - writerCountersSize]byte
}

// journal record: size u32 │ op u8 │ flags u8 │ klen u16 │ cache u32 │ vlen u32 │ exp i64 │ key │ value │ pad
const (
	jrecHeader     = 24
	jflagNoValue   = 1 // the value was too large for the journal: readers fetch it
	jflagCounter   = 2 // opSet of a counter (itemCounter)
	jflagTagged    = 4 // opSet of a tagged item: the value field is its tag list, then its value
	journalMaxVal  = 64 << 10
	journalMinSize = 256 << 10
)

// writerCounters are the log writer's figures, kept in the arena so that
// any process (the monitor in the master) can read those of a cache manager
// process. Only the log writer writes them.
type writerCounters struct {
	records   atomic.Uint64 // records appended to the log
	bytes     atomic.Uint64 // bytes appended to the log
	syncs     atomic.Uint64 // fsyncs of the log
	syncNanos atomic.Uint64 // total time spent in them
	snapshots atomic.Uint64 // snapshots written
	gaps      atomic.Uint64 // times the journal lapped the log writer
	failures  atomic.Uint64 // times the log writer began failing to write its log
	failSince atomic.Int64  // unix nanoseconds when the current failure began; 0 = none
}

const writerCountersSize = 64
