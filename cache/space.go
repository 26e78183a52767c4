package cache

import (
	"bytes"
	"context"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster2/cluster2/internal/nocopy"
	"github.com/cluster2/cluster2/shm"
)

// regionName is the arena region that holds the space.
const regionName = "cache"

// Space is one process's handle on the cache space of an arena: every named
// cache of the cluster lives in it. Setup creates it, Attach opens it. A Space
// is safe for concurrent use; it must not be copied. Close stops its
// background work (it does not unmap the arena).
type Space struct {
	_    nocopy.NoCopy
	a    *shm.Arena
	p    *shm.Proc
	mem  []byte // the whole arena
	h    *spaceHeader
	sh   []shard
	smsk uint64
	bmsk uint64
	heap uint64 // bytes of a shard's main log (the heap's first part)
	// small is the bytes of a shard's small log (the heap's last tenth), region
	// the whole heap (heap+small: every record of a shard lies in it).
	small, region uint64
	smallMax      uint64 // the largest record written to the small log (a quarter of it); larger go to main
	jr            journal

	// The geometry as Attach checked it, copied: the header's words are
	// never read again (a damaged header cannot move what is indexed).
	shardsOff, stride uint64

	maxValue int
	stats    []statsRow // statsSlots × MaxCaches
	local    [MaxCaches]localStats

	durWait    durableWaiters // this process's Always writers waiting for an fsync
	watchLost  atomic.Uint64  // journal records this process's watchers missed
	loadSeq    atomic.Uint64  // ids of this process's loads (a loading record's exp)
	journaling atomic.Bool    // false while Restore replays a log: its records are logged already

	remotes atomic.Pointer[map[string]Remote] // the distributed caches' second tiers, by name (Distribute; copy on write)

	mu       sync.Mutex
	caches   [MaxCaches]*Cache // the space's own handle of each cache this process opened, by id (see handle)
	watchers map[uint32]map[string][]*Watcher
	nwatch   [MaxCaches]int // local watchers per cache
	tailing  bool

	stop      chan struct{}
	bgDone    sync.WaitGroup
	watchDone sync.WaitGroup // watcher goroutines (Close waits for them watchStopWait at most)
	closed    atomic.Bool
	startBG   sync.Once
	// arenaUse is read-held by loads that may outlive their caller (a
	// background refresh, a load past a timeout) while they touch the
	// arena; Close write-takes it once after closed is set, so none
	// touches it after Close returns (the arena may be unmapped then).
	arenaUse sync.RWMutex
}

// shard is a process's view of one shard block.
type shard struct {
	h       *shardHeader
	pc      []perCache
	b       []bucket
	heapOff uint64 // arena offset of the heap: the main log, then the small log
	ghost   []atomic.Uint64
}

// ghostLines is the ghost table's size, in 64-byte lines, of a shard with
// the given buckets: one entry per bucket.
func ghostLines(buckets uint64) uint64 { return max(buckets/ghostWays, 1) }

// splitHeap returns the main and small logs' sizes of a heap of the given
// bytes: small takes a tenth (S3-FIFO's small queue), on record boundaries.
func splitHeap(heap uint64) (main, small uint64) {
	small = heap / 10 &^ (recAlign - 1)
	return heap - small, small
}

// geometry computes the layout of a space of the given options.
type geometry struct {
	shards, buckets        uint64
	heap, stride           uint64
	statsOff, statsBytes   uint64
	journalOff, journalCap uint64
	shardsOff, total       uint64
	statsSlots             uint64
}

func pow2floor(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	return 1 << (63 - bits.LeadingZeros64(n))
}

func computeGeometry(opts SpaceOptions, slots int) (geometry, error) {
	var g geometry
	total := uint64(opts.Bytes)
	if total < 1<<20 {
		return g, fmt.Errorf("cache: %w: space of %d bytes is below 1 MiB", ErrInvalidConfig, opts.Bytes)
	}
	g.shards = uint64(opts.Shards)
	if g.shards == 0 {
		g.shards = pow2floor(min(max(total/(2<<20), 4), 64))
	}
	if g.shards&(g.shards-1) != 0 || g.shards > 256 {
		return g, fmt.Errorf("cache: %w: Shards %d is not a power of two from 1 to 256", ErrInvalidConfig, opts.Shards)
	}
	g.journalCap = uint64(opts.JournalBytes)
	if g.journalCap == 0 {
		g.journalCap = pow2floor(min(max(total/32, journalMinSize), 4<<20))
	}
	if g.journalCap&(g.journalCap-1) != 0 || g.journalCap < journalMinSize {
		return g, fmt.Errorf("cache: %w: JournalBytes %d is not a power of two of at least %d", ErrInvalidConfig, opts.JournalBytes, journalMinSize)
	}
	g.statsSlots = uint64(slots)
	g.statsOff = spaceHeaderSize
	g.statsBytes = g.statsSlots * MaxCaches * statsRowSize
	g.journalOff = g.statsOff + g.statsBytes
	g.shardsOff = g.journalOff + journalHdrSize + g.journalCap
	if g.shardsOff+g.shards*(shardHeaderSize+MaxCaches*perCacheSize+64*bucketSize+64<<10) > total {
		return g, fmt.Errorf("cache: %w: %d bytes is too small for %d shards", ErrInvalidConfig, total, g.shards)
	}
	per := (total - g.shardsOff) / g.shards
	fixed := uint64(shardHeaderSize + MaxCaches*perCacheSize)
	// One index slot per ~64 bytes of heap: the index takes about 1/9 of the rest.
	g.buckets = max(pow2floor((per-fixed)/9/bucketSize), 16)
	g.heap = (per - fixed - (g.buckets+ghostLines(g.buckets))*bucketSize) &^ 63
	g.stride = fixed + (g.buckets+ghostLines(g.buckets))*bucketSize + g.heap
	g.total = g.shardsOff + g.shards*g.stride
	return g, nil
}

// Setup creates the cache space in a, sized by opts, or attaches to it if it
// exists already. The master calls it before starting its workers.
func Setup(ctx context.Context, a *shm.Arena, opts SpaceOptions) (*Space, error) {
	if _, _, ok := a.Lookup(regionName); ok {
		return Attach(a)
	}
	if opts.Bytes == 0 {
		opts.Bytes = a.Free() * 3 / 4
	}
	g, err := computeGeometry(opts, a.SlotCount())
	if err != nil {
		return nil, err
	}
	off, created, err := a.Region(ctx, regionName, int64(g.total), func(off shm.Off) error {
		h := shm.Ptr[spaceHeader](a, off)
		h.version = spaceVersion
		h.shards = uint32(g.shards)
		h.buckets = uint32(g.buckets)
		h.heapSize = g.heap
		h.shardStride = g.stride
		h.shardsOff = uint64(off) + g.shardsOff
		h.journalOff = uint64(off) + g.journalOff
		h.journalCap = g.journalCap
		h.statsOff = uint64(off) + g.statsOff
		h.statsSlots = uint32(g.statsSlots)
		h.magic = spaceMagic
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: setup: %w", err)
	}
	if created {
		h := shm.Ptr[spaceHeader](a, off)
		// Locks are registered so that the master's ReleaseSlot frees those a
		// dead process held. A crash before this leaves them to waiter takeover.
		for _, r := range []struct {
			off          uint64
			count, strde int
		}{
			{uint64(off) + 128, 1, shm.LockSize},
			{h.journalOff, 1, shm.LockSize},
			{h.shardsOff, int(h.shards), int(h.shardStride)},
		} {
			if err := a.RegisterLocks(ctx, shm.Off(r.off), r.count, r.strde); err != nil {
				return nil, fmt.Errorf("cache: setup: %w", err)
			}
		}
	}
	return Attach(a)
}

// Attach opens the cache space of a, which Setup created (in this process or
// another). It returns ErrNoSpace when there is none and ErrCorrupt when its
// header is damaged.
func Attach(a *shm.Arena) (*Space, error) {
	off, size, ok := a.Lookup(regionName)
	if !ok {
		return nil, ErrNoSpace
	}
	p, err := a.Self()
	if err != nil {
		return nil, fmt.Errorf("cache: attach: %w", err)
	}
	h := shm.Ptr[spaceHeader](a, off)
	if h.magic != spaceMagic || h.version != spaceVersion {
		return nil, fmt.Errorf("%w: space header magic %#x version %d", ErrCorrupt, h.magic, h.version)
	}
	if err := checkGeometry(h, uint64(off), uint64(size), uint64(a.Size()), a.SlotCount()); err != nil {
		return nil, err
	}
	sp := &Space{
		a:         a,
		p:         p,
		mem:       a.Bytes(0, int(a.Size())),
		h:         h,
		smsk:      uint64(h.shards) - 1,
		bmsk:      uint64(h.buckets) - 1,
		region:    h.heapSize,
		shardsOff: h.shardsOff,
		stride:    h.shardStride,
		maxValue:  int(min(h.heapSize/4-recHeader-MaxKeyLen, hardMaxValueLen)),
		stats:     shm.Slice[statsRow](a, shm.Off(h.statsOff), int(h.statsSlots)*MaxCaches),
		watchers:  map[uint32]map[string][]*Watcher{},
		stop:      make(chan struct{}),
	}
	sp.heap, sp.small = splitHeap(h.heapSize)
	sp.smallMax = sp.small / 4 &^ (recAlign - 1)
	sp.journaling.Store(true)
	sp.sh = make([]shard, h.shards)
	for i := range sp.sh {
		base := h.shardsOff + uint64(i)*h.shardStride
		sp.sh[i] = shard{
			h:  shm.Ptr[shardHeader](a, shm.Off(base)),
			pc: shm.Slice[perCache](a, shm.Off(base+shardHeaderSize), MaxCaches),
			b:  shm.Slice[bucket](a, shm.Off(base+shardHeaderSize+MaxCaches*perCacheSize), int(h.buckets)),
			ghost: shm.Slice[atomic.Uint64](a, shm.Off(base+shardHeaderSize+MaxCaches*perCacheSize+uint64(h.buckets)*bucketSize),
				int(ghostLines(uint64(h.buckets))*ghostWays)),
			heapOff: base + shardHeaderSize + MaxCaches*perCacheSize + (uint64(h.buckets)+ghostLines(uint64(h.buckets)))*bucketSize,
		}
	}
	sp.jr = journal{
		h:    shm.Ptr[journalHdr](a, shm.Off(h.journalOff)),
		data: a.Bytes(shm.Off(h.journalOff+journalHdrSize), int(h.journalCap)),
		cap:  h.journalCap,
	}
	return sp, nil
}

// minHeap is the smallest heap per shard Attach accepts: computeGeometry
// never makes one below 60 KiB, and reserve needs room for the largest
// record (a quarter of the heap) plus moveSlack.
const minHeap = 32 << 10

// checkGeometry checks the space header h of the region [off, off+size) of
// an arena of arenaSize bytes with slots slots, every sum overflow-safe: the
// shards, the journal and the statistics rows lie inside the region, in that
// order after the header, each at a 64-byte boundary, and the counts are
// those Setup writes. A header that fails returns ErrCorrupt.
func checkGeometry(h *spaceHeader, off, size, arenaSize uint64, slots int) error {
	end := off + size
	bad := func(what string) error {
		return fmt.Errorf("%w: space geometry does not fit its region (%s)", ErrCorrupt, what)
	}
	switch {
	case end < off || end > arenaSize:
		return bad("region")
	case h.shards == 0 || h.shards&(h.shards-1) != 0 || h.shards > 256:
		return bad("shards")
	case h.buckets == 0 || h.buckets&(h.buckets-1) != 0 || uint64(h.buckets) > size/bucketSize:
		return bad("buckets")
	case h.heapSize < minHeap || h.heapSize%recAlign != 0 || h.heapSize > size:
		return bad("heap")
	case h.shardStride != shardHeaderSize+MaxCaches*perCacheSize+(uint64(h.buckets)+ghostLines(uint64(h.buckets)))*bucketSize+h.heapSize:
		return bad("shard stride")
	case h.journalCap&(h.journalCap-1) != 0 || h.journalCap < journalMinSize || h.journalCap > size:
		return bad("journal capacity")
	case int(h.statsSlots) < slots || uint64(h.statsSlots) > size/(MaxCaches*statsRowSize):
		return bad("statistics rows")
	}
	// Every term is now at most size (or a product of two such below 2^40
	// with size below 2^48), so the sums below do not overflow once each
	// offset is inside the region.
	for _, o := range []uint64{h.statsOff, h.journalOff, h.shardsOff} {
		if o < off+spaceHeaderSize || o > end || (o-off)%recAlign != 0 || off%recAlign != 0 {
			return bad("offsets")
		}
	}
	switch {
	case h.statsOff+uint64(h.statsSlots)*MaxCaches*statsRowSize > h.journalOff:
		return bad("statistics rows overlap the journal")
	case h.journalOff+journalHdrSize+h.journalCap > h.shardsOff:
		return bad("journal overlaps the shards")
	case uint64(h.shards)*h.shardStride > end-h.shardsOff:
		return bad("shards past the region's end")
	}
	return nil
}

// Arena returns the arena the space lives in.
func (sp *Space) Arena() *shm.Arena { return sp.a }

// MaxValueLen returns the longest value this space stores, in bytes: a
// quarter of a shard's heap, at most 4 MiB.
func (sp *Space) MaxValueLen() int { return sp.maxValue }

// Close stops the space's background goroutines in this process and closes
// every Cache opened from it. The shared data stays for the other processes.
// It waits at most 250 ms for watcher callbacks that are running (see
// Cache.Watch): a blocked callback does not hold up a process's stop.
func (sp *Space) Close() error {
	if !sp.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(sp.stop)
	sp.arenaUse.Lock()
	sp.arenaUse.Unlock() //nolint:staticcheck // a barrier: loads still running see closed from here on
	sp.bgDone.Wait()     // the journal reader and the background loop: they run no user code
	// Watcher goroutines stop at their next change; one inside a user
	// callback is waited for a short while only. Taking mu orders every
	// Watch that saw closed false (and added to watchDone) before the Wait.
	sp.mu.Lock()
	sp.mu.Unlock() //nolint:staticcheck // an empty critical section: a barrier against Watch
	watchers := make(chan struct{})
	go func() { sp.watchDone.Wait(); close(watchers) }()
	select {
	case <-watchers:
	case <-time.After(watchStopWait):
	}
	sp.publishStats()
	sp.mu.Lock()
	for i, c := range sp.caches {
		if c != nil {
			c.closed.Store(true)
			sp.caches[i] = nil
		}
	}
	sp.mu.Unlock()
	return nil
}

// Use opens the named cache in this space, creating it with opts if no
// process created it before. The first Use of a name fixes its options
// cluster-wide: a later Use with different options returns an error wrapping
// ErrOptionsConflict that names the option. Every Use returns a new handle:
// closing it (Cache.Close) closes no other.
func (sp *Space) Use(name string, opts Options) (*Cache, error) {
	if sp.closed.Load() {
		return nil, ErrClosed
	}
	if len(name) == 0 || len(name) > MaxNameLen || bytes.IndexByte([]byte(name), 0) >= 0 {
		return nil, fmt.Errorf("%w: %q (1 to %d bytes, no NUL)", ErrBadName, name, MaxNameLen)
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("cache %q: %w", name, err)
	}
	opts = opts.normalize()
	if opts.Persist && sp.remoteOf(name) != nil {
		return nil, fmt.Errorf("cache %q: %w: Persist, but the cache is distributed (its second tier keeps it)", name, ErrInvalidConfig)
	}
	id, existing, err := sp.register(name, opts)
	if err != nil {
		return nil, err
	}
	if why := existing.conflict(opts); why != "" {
		return nil, fmt.Errorf("cache %q: %w: %s", name, ErrOptionsConflict, why)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	c := sp.handle(id, name, opts)
	sp.startBG.Do(sp.startBackground)
	return c, nil
}

// register finds or creates the registry entry of name.
func (sp *Space) register(name string, opts Options) (uint32, Options, error) {
	if id, o, ok := sp.findName(name); ok {
		return id, o, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sp.h.lock.Lock(ctx, sp.p); err != nil {
		return 0, Options{}, fmt.Errorf("cache %q: registry: %w", name, err)
	}
	// A registry entry is published by count after it is complete: a dead
	// holder leaves nothing to repair.
	defer sp.h.lock.Unlock(sp.p)
	if id, o, ok := sp.findName(name); ok {
		return id, o, nil
	}
	n := sp.h.count.Load()
	if n >= MaxCaches {
		return 0, Options{}, fmt.Errorf("cache %q: %w: all %d used", name, ErrTooManyCaches, MaxCaches)
	}
	e := &sp.h.registry[n]
	*e = regEntry{expire: int64(opts.Expire), durability: uint32(opts.Durability),
		stale: int64(opts.StaleFor), failSafe: int64(opts.FailSafeFor), soft: int64(opts.SoftTimeout),
		hard: int64(opts.HardTimeout), notFound: int64(opts.NotFoundExpire), ahead: aheadMillionths(opts.RefreshAhead)}
	if opts.Persist {
		e.persist = 1
	}
	copy(e.name[:], name)
	sp.h.count.Store(n + 1) // release: publishes the entry
	if opts.Persist {
		// The log writer logs the cache's definition before any of its entries.
		sp.journalAppend(opDefine, n, []byte(name), nil, int64(opts.Expire))
	}
	return n, opts, nil
}

// findName looks a name up in the published registry.
func (sp *Space) findName(name string) (uint32, Options, bool) {
	n := min(sp.h.count.Load(), MaxCaches) // acquire
	for i := range n {
		e := &sp.h.registry[i]
		if string(bytes.TrimRight(e.name[:], "\x00")) == name {
			return i, sp.entryOptions(i), true
		}
	}
	return 0, Options{}, false
}

// Lookup returns the options of the named cache, if some process created it.
func (sp *Space) Lookup(name string) (Options, bool) {
	_, o, ok := sp.findName(name)
	return o, ok
}

// entryOptions returns the options of registry entry id.
func (sp *Space) entryOptions(id uint32) Options {
	e := &sp.h.registry[id]
	return Options{Persist: e.persist == 1, Expire: time.Duration(e.expire), Durability: Durability(e.durability),
		StaleFor: time.Duration(e.stale), FailSafeFor: time.Duration(e.failSafe), SoftTimeout: time.Duration(e.soft),
		HardTimeout: time.Duration(e.hard), NotFoundExpire: time.Duration(e.notFound), RefreshAhead: float64(e.ahead) / 1e6}
}

// Names returns the names of every cache of the space, in creation order.
func (sp *Space) Names() []string {
	n := min(sp.h.count.Load(), MaxCaches)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, string(bytes.TrimRight(sp.h.registry[i].name[:], "\x00")))
	}
	return out
}

var defaultSpace atomic.Pointer[Space]

// SetDefault makes sp the space that the package-level Use opens caches in
// (nil: none). cluster2.Listen sets the Cluster's space (Cluster.Caches) in
// every process of a cluster with the cache on, before the worker's warm-up,
// and clears it when the cluster stops if it is still the default. Setting
// another space later changes what Use opens, not the Cluster's space (the
// one the monitor reads).
func SetDefault(sp *Space) { defaultSpace.Store(sp) }

// Default returns the space set by SetDefault, or nil.
func Default() *Space { return defaultSpace.Load() }

// Use opens the named cache in the process's default space (see SetDefault):
// it works in every process of a running cluster. Without a default space it
// returns ErrNoSpace.
func Use(name string, opts Options) (*Cache, error) {
	sp := defaultSpace.Load()
	if sp == nil {
		return nil, fmt.Errorf("cache %q: %w: not in a cluster with the cache enabled", name, ErrNoSpace)
	}
	return sp.Use(name, opts)
}
