// Package cache is cluster2's shared cache: named caches that live in the
// shared arena, so that every process of a cluster reads them directly. A hit
// costs a hash, one or two cache lines of index, a copy and a re-check: no
// lock, no system call, and no write to shared memory except one CAS of the
// slot word on the first three hits of a record since the main log's tail
// last passed it (see Eviction).
//
// # Model
//
// One [Space] per arena holds every named cache: a registry of names and
// options, S shards (each a robust lock, an index and a log-structured heap)
// and a change journal. [Setup] creates the space (the master does it before
// its workers start), [Attach] finds it in any other process, and [Use] (on the
// process's default space) or [Space.Use] opens a named cache. The first Use
// of a name fixes its options cluster-wide. In a cluster the space is the
// Cluster's (cluster2.Cluster.Caches): cluster2.Listen makes it the default
// ([SetDefault]) in every process, a worker's before its warm-up, and the
// monitor reads the Cluster's space, never [Default].
//
// # Layout (format: changing it bumps spaceVersion)
//
//	space header (12288 B): magic │ version │ shard count │ buckets/shard │ heap/shard │ offsets │
//	                       registry lock │ cache count │ sweeper │ tracking epoch (distributed caches) │
//	                       registry[64] (128 B each) {name[48] │ expire │ persist │ durability │
//	                       stale │ fail-safe │ soft timeout │ hard timeout │ not-found TTL │ refresh ahead │ free[16+4]} │
//	                       ops[64] {tag invalidations │ clears}
//	journal: header (4096 B, one 128-byte line pair per writer: {lock │ tail │ claim} (writers) │
//	         {watchers' Event} │ {durable │ logged │ log writer's owner │ default durability │
//	         failing │ gap requests │ gaps covered} (the log writer) │ {durable Event} (Always writers sleep) │ {log writer's Event} (it sleeps) │
//	         watchers[64] │ log writer's counters) │ data (power of two bytes)
//	journal record: size u32 │ op u8 │ flags u8 │ klen u16 │ cache u32 │ vlen u32 │ deadline i64 │
//	         key │ value │ pad to 8      (flags: no value 1, counter 2, tagged 4: value is tag list │ value)
//	shard i: header (128 B: lock │ head │ tail │ Event │ repairs │ moved │ shead │ stail │ promoted │ ghost hits)
//	         perCache[64] { entries │ bytes │ evictions │ expirations }   32 B each
//	         buckets[B]   { seq u32 │ flags u32 │ slots[7] u64 }            64 B each (one cache line)
//	         ghost[B/8]   { 8 × (fingerprint u32 │ main head/64 u32) }     64 B each (at least one line)
//	         heap         main log (head, tail; 9/10 of it) │ small log (shead, stail; the last tenth):
//	                      two circular logs of records on 64-byte boundaries
//
//	slot word (u64):  tag (16 bits: hash>>48) │ record offset in the arena (bits 47-2; 64-byte aligned) │
//	                  access count (bits 1-0, 0-3); 0 = empty
//
//	record (40-byte header, then key, then value, padded to 8):
//	┌─────────┬─────────┬────────┬──────┬───────┬──────────┬────────┬────────┬────────┬───────┬─────┬───────┐
//	│ size u32│ vlen u32│ klen u16│kind u8│ref u8 │ cache u32│owner u32│life u32│hash u64│exp i64│ key │ value │
//	└─────────┴─────────┴────────┴──────┴───────┴──────────┴────────┴────────┴────────┴───────┴─────┴───────┘
//	cache ids 64..127: a key's shadow (its load marker beside its item; see Stale serving)
//	kinds: item (a value; life: its time to live at its Set, in ms), loading (a Get's loader runs in
//	process owner; exp holds the load's id), failed (the loader's error as value, kept one second
//	for the waiters; owner: no room ^0, the loader's "not found" ^0-1, else 0), filler (the unused end of the heap at a wrap), negative (a loader's "not
//	found", no value, kept for the cache's NotFoundExpire)
//	an item's owner word holds its flags: counter 1 (the value is 8 bytes, a little-endian int64:
//	Add), tagged 2 (a tag list, count u8 │ {len u8 │ tag}×count, follows the value inside size)
//	statistics rows: one 96-byte row per process slot and cache {hits │ misses │ loads │ load
//	errors │ token │ counter ops │ CAS failures │ 8 B free │ stale serves │ fail-safe serves │
//	refreshes │ negative hits}; the space header's ops[64] (after the registry) count
//	each cache's tag invalidations and clears
//
// # Hashing and probing
//
// h = xxhash(key) mixed with the cache id. The shard is h mod S; the home
// bucket is (h>>8) mod B; a key lives in its home bucket or one of the next
// maxProbe-1. A bucket whose slots were all full when an insert passed it has
// its overflow flag set, so a lookup stops at the first bucket without it.
//
// # The hit path (readers, any process, no lock)
//
//	s1 := bucket.seq (odd: a writer is inside, retry)
//	for each slot with our tag: check the offset is a record boundary of
//	    the shard's heap, load each header field once into a local, check those bounds,
//	    compare kind, cache id and key, check the deadline, append the value
//	    to dst, every length and kind taken from the locals
//	s2 := bucket.seq; if s1 != s2 the copy may be torn: retry
//
// Nothing read from the arena before the s2 check is trusted except through
// those bounds-checked copies: an eviction may overwrite the record between
// any two loads, so a header field read twice (once to check, once to slice)
// could index out of range. With the copy, whatever bytes a writer leaves
// there, the reader computes a miss, a retry or a value the sequence check
// then vouches for; it cannot panic. The same holds for the journal
// readers (they copy a record with a size bounded by the ring, then decode
// only the copy); Keys, Inspect, Verify, repair and the loader read under
// the shard lock.
//
// After a few failed tries (a writer died inside a bucket, or heavy churn) the
// reader takes the shard lock, which repairs a dead writer's half-done work,
// and reads under it. In the terminology of the Go memory model, a Set's
// release of bucket.seq synchronizes before a Get that loads the even value
// and observes the new slot.
//
// # The write path (under the shard's robust lock)
//
// A Set (1) picks a log (see Eviction) and reclaims space at its tail until
// the record fits: a tail record that no slot points to is garbage; a live
// one is evicted, promoted from the small log to the main one, or given a
// second chance at the main head, as its access count says; a live loading
// record is never evicted but always moved to the main head (see Loader
// once); (2) writes the record at the head and then advances head;
// (3) publishes: bucket.seq odd, store the slot word, bucket.seq even; (4)
// appends a journal record when somebody watches that cache. Index slots are
// the only truth about which records are live: a record no slot points to is
// free space, whatever it holds. So every step leaves a state that the next
// owner can detect and repair, and a process killed at any instant leaves:
//
//   - during (1) or (2): unreferenced records, reclaimed by the tail later;
//   - during (3): an odd bucket.seq (readers fall back to the lock; the repair
//     makes it even), and each slot word either old or new (a single store);
//   - during (4), or between (3) and (4): a change in the index with no
//     journal record (or a half-written one: see the journal below). The
//     repair that the next lock owner runs appends an opRepair record
//     first, before any new change of the shard: watchers hear OpLost
//     (changes are missing before it) and the log writer takes a snapshot,
//     which logs the shard as it is. A reset after damage does the same.
//
// Whoever takes a shard lock over from a dead owner runs repair: even the
// sequences, drop slots that point outside the live log or at records that do
// not match them, recount the per-cache counters. [Space.Verify] checks the
// same invariants without changing anything.
//
// # Eviction (S3-FIFO in two logs; spaceVersion 6)
//
// Each shard's heap is two circular logs, S3-FIFO's queues (Yang et al.,
// SOSP'23): the small log (its last tenth: shead, stail) and the main log
// (the rest: head, tail), and a ghost table of hashes recently evicted from
// the small log. A record's access count lives in the low two bits of the
// slot word that points at it (records are 64-byte aligned, so those bits
// were always zero), not in the record:
//
//   - A hit (the lock-free read, or a read under the lock) raises the count
//     with one CompareAndSwap of the word it read, and only while the count
//     is below 3. So a record's slot line is written at most three times
//     between two passes of the main tail, and a hot record's not at all:
//     no shared-line write on every hit, and none on a hit of a saturated
//     record (the CLOCK this replaced sampled every 16th hit into a per-process
//     buffer drained every 100 ms: its counts depended on timing, and so
//     did its hit ratio, below a plain LRU's). A CAS that fails (the slot was
//     republished meanwhile) counts nothing; one that lands on a word
//     republished with the same value (a record at the same offset, same tag
//     and count: ABA) credits that record: a hint, never a correctness matter.
//   - Where a new record goes (place, under the shard lock): loading and
//     failed records, and any record larger than a quarter of the small log,
//     to the main log; an overwrite (a key with a live record) to the main
//     log, keeping its count (an overwrite is an access: S3-FIFO would move
//     the record to the main queue at the small tail; see place); a key the
//     ghost table knows (evicted from the small
//     log within the last main-log's worth of main writes) to the main log;
//     anything else to the small log, count 0.
//   - The small tail (reserve on the small log): a live record read while
//     there (count > 0), or any live record while the main log has room
//     once the garbage at its tail is reclaimed (roomWithoutEvicting: a
//     cache that is not full evicts nothing), is copied
//     to the main head with count 0 (promote); any other is evicted and its
//     hash goes to the ghost table. A scan of one-time keys passes through
//     the small log and out without touching the main log.
//   - The main tail: a live item with count > 0 is copied to the main head
//     with its count one lower (second chance, at most 16 per reserve), a
//     loading record is moved (never evicted), any other is evicted.
//   - The ghost table: per shard B/8 lines of 8 entries, an entry the hash's
//     high word (ORed with 1) and the main head/64 when it was stored; a
//     lookup that finds the fingerprint clears it and counts only if the
//     main head moved less than the main log's size since. A new entry takes
//     an empty way, its own, or the oldest.
//
// Who writes what: slot-word counts, every process's hits (CAS) and lock
// holders (stores of whole words); everything else here (both logs'
// positions, ghost entries, records) only the shard lock's holder. Memory
// order: the count CAS publishes nothing (it changes no offset and no
// record byte), so it needs no fence on either architecture; the lock
// holder's stores of slot words stay inside the bucket seqlock as before. A
// promotion or second chance copies the record into space reserve reclaimed
// after fence 3, and then publishes the slot (release), as the Set does.
//
// A kill -9 at each step of an eviction: during a promotion, before the slot
// store the copy at the main head is unreferenced garbage and the slot still
// names the complete original (the small tail has not passed it); after it,
// the original is garbage; a killed process between evicting a small record
// and storing its ghost entry only leaves the hash unremembered. A count or
// a ghost entry with any value at all is a valid hint, so repair and Verify
// have nothing to fix there; repair and Verify walk both logs (a small log
// holding a record of a kind place never puts there is corruption: the
// shard is reset, Verify reports it). Figures: bench's
// BenchmarkCacheHitRatio against otter (W-TinyLFU) and a plain LRU, in
// docs/BENCHMARKS.md.
//
// Statistics are counted in striped per-process Go counters, published
// every 100 ms into the process's row of the arena, and summed over every
// live process on read.
//
// # Loader once
//
// A Get that misses with a loader takes the shard lock and either finds a
// loading record (it waits on the shard's Event, bounded by its context) or
// inserts its own, with its owner generation and a load id (in exp: the pair
// names the load wherever the record moves), and runs the loader outside any
// lock. A loading record is never evicted, neither by the tail (it is moved
// to the head: a header and a key, at most 1088 bytes) nor by insert's
// choice of a victim slot: an evicted marker made a waiter find the key absent
// and load it a second time. A shard so full of loads in progress that a
// record finds no room (the tail carried them round the log four times) or a
// probe range whose 56 slots all hold one refuses the Set or the new load
// with ErrTooManyLoads: never a silent second load. A loaded value that finds
// no room turns its loading record into a failed one in place (inside the
// bucket's seqlock; owner failedNoRoom): its loader's caller gets the value,
// the waiters ErrLoaderFailed wrapping ErrTooManyLoads. reserve leaves
// moveSlack (2176 bytes) free so that a loading record can be copied to the
// head before the tail leaves it: a crash at any step leaves the slot on a
// complete record. Only when a filler at a wrap ate into that slack does a
// move whose copy would overlap the original go through Go memory with its
// bucket's sequence odd; a process killed in that window
// leaves a slot that repair drops, and a waiter loads again: the one second
// load while the first loader lives, after a crash inside the shard lock. The loader's value replaces the loading record (a normal Set, watchers
// told); its error replaces it with a failed record that the waiters return. A
// waiter whose sleep times out checks whether the loading process lives and,
// if not, replaces the record with its own and loads.
//
// # Stale serving, fail-safe, refresh ahead, negative caching
//
// The loader options (Options: StaleFor, FailSafeFor, SoftTimeout,
// HardTimeout, RefreshAhead, NotFoundExpire) live in the cache's registry
// entry, so every process applies the same ones; a persistent cache logs
// them in its definition record. Three record states carry them:
//
//   - an expired item stays in the index until its horizon, exp +
//     max(StaleFor, FailSafeFor): the sweeper, the tail (counting it an
//     expiry only past it) and the lookups under the lock drop it only
//     then (pastHorizon). Until then the lock-free read returns resStale
//     (within StaleFor: Get serves it and refreshes) or resExpired
//     (GetInto: a miss, as before).
//   - a load beside an item (a background refresh, or a Get within
//     FailSafeFor) is named by a loading record in the key's shadow: cache
//     id + 64, hash ^ shadowMix (same shard, another bucket and tag). The
//     item stays readable; lock-free readers never meet the marker (another
//     cache id). It is an ordinary loading record: never evicted, moved by
//     the tail, taken over when its owner generation is dead, resolved
//     under the shard lock by its load (owner and load id). The result
//     replaces the item only if the item is still the one the load began
//     beside (same deadline): a Set meanwhile wins. A failed load leaves a
//     failed record in the shadow for failedLinger: the fail-safe's pause,
//     during which every Get in every process returns the kept value
//     without loading, and no background refresh starts.
//   - a negative record (kindNegative, no value) is a loader's "not found"
//     kept NotFoundExpire: the lock-free read returns resNegative (Get:
//     ErrNotFound; GetInto, Keys, Inspect: absent). It is not journaled or
//     logged (a process-lifetime hint) and is replaced by any Set.
//
// An item's life (recHdr.life, its TTL at its Set in ms) gives refresh
// ahead's window: a Get that hits an item with exp - now <= life ×
// RefreshAhead gets resAhead and starts a background refresh. A process
// runs at most one refresh goroutine per key (Cache.refreshing), and one
// that found another process's marker leaves the key alone for 100 ms, so
// hits in a window take the shard lock about once per key, process and 100
// ms. The hit path reads life beside exp (the same line) and makes its two
// new tests only behind the deadline test it made before.
//
// Crashes: nothing new is changed in place. A process killed during a
// refresh or a fail-safe load leaves its marker, which the next Get or
// refresh that meets it takes over (its owner is dead), or the repair after
// a lock takeover sees as any loading record. A load that outlives its
// caller (a background refresh; a load past a timeout) touches the arena
// only under Space.arenaUse and never after Space.Close.
//
// # Watch and the journal
//
// Mutations of a cache that some process watches are appended, while the
// shard lock is held (so per key, journal order is mutation order), to a
// broadcast journal: a byte ring under its own robust lock. A writer sets claim
// to the end of what it will write, writes, then publishes tail (release) and
// wakes the journal Event. Each watching process tails it with its own cursor
// from one goroutine; a record it copied is valid only if claim has not passed
// its position plus the capacity afterwards. That goroutine runs no user
// code: it hands each change to the queue of every local watcher of its key
// (16384 changes at most) without waiting, and each watcher has its own
// goroutine that calls its callback in queue order, so per key and per
// watcher the order is journal order, and a blocked callback holds up only
// its own watcher. A change that finds its watcher's queue full is dropped
// and counted (Watcher.Lost, Stats.WatchLost); the watcher is told with one
// OpLost change placed where the dropped ones would have been. A reader that
// was lapped counts the loss (Stats.WatchLost) and tells every local watcher
// the same way. Space.Close waits 250 ms at most for running callbacks. Lock
// order is always shard, then journal.
//
// claim never goes down: a writer stores max(claim, its end). A writer killed
// between claiming and publishing leaves claim past tail and may have
// overwritten bytes up to it; the next lock owner leaves that claim in place
// (lowering it to tail, as recovery once did, let a lagging reader that copied
// during the overwrite accept a half-overwritten record). Readers near the
// dead claim see a lap until writes pass it: conservative, never wrong.
//
// # Persistence (the log writer's side of the journal)
//
// Records of persistent caches are always journaled. The log writer (package
// persist's LogWriter, run by the master or by the cache manager process;
// docs/cache.md says which name is which) reaches the space through one
// door, [Space.Journal], which returns persist's Journal interface: attach
// as the log writer, read the journal's records of persistent caches,
// restore a log, scan for a snapshot, the marks and the figures. A program
// that only uses caches never calls it. The log writer alone writes logged
// (everything below is in its log: the restart point of a new log writer),
// durable (everything below is on disk as its durability asks), its owner
// generation and its counters; it reads the journal like a watcher and
// treats a lap as a gap it repairs with a snapshot. What a writer of a
// persistent cache waits for (an Always writer until durable passes its
// record, any writer while the log writer is more than half a journal
// behind) is this package's half of group commit
// (durable.go); the protocol as a whole, both halves, is drawn once, in
// package persist's doc (# Group commit).
//
// # Memory order per architecture (where the fences go)
//
// Every shared word named above is a sync/atomic value; record bytes, keys,
// values and journal record bytes are plain. On amd64 (TSO: loads are not
// reordered with loads, stores not with stores; Go's atomic stores and
// read-modify-writes are locked instructions) the orders below hold with no
// fence. On arm64 Go's atomic Load is LDAR (acquire), Store STLR (release),
// Add/CAS LDADDAL/CASAL or an LDAXR/STLXR loop: acquire keeps later accesses
// after the load, release keeps earlier ones before the store, but neither
// keeps earlier plain loads before an acquire load nor later plain stores
// after a release store. These places have a fence from internal/order
// (LoadFence: DMB ISHLD on arm64; StoreFence: DMB ISHST; both nothing on
// amd64, where the sync/atomic operation beside each is the compiler
// barrier), each marked "doc.go, fence N" in the code:
//
//  1. Hit path, before each re-read of bucket.seq that decides a result
//     (the s2 check after the value copy, and the one after a key mismatch;
//     the slot words and the overflow flag are atomic loads, which LDAR
//     keeps in order with the re-read): a load-load fence (DMB ISHLD),
//     so that the header copy, key compare and value copy are complete before
//     s2 is read. Without it a reader can take bytes a later writer wrote and
//     still read the old, equal s2.
//  2. Writers, after a bucket.seq increment that makes it odd and before
//     plain stores over a record a reader may still be copying: the in-place
//     changes (moveLoading's overlapping path, failInPlace, addInPlace). A store-store
//     fence (DMB ISHST) after the increment; with LSE's LDADDAL the
//     increment's acquire already orders them, not with the LDAXR/STLXR loop.
//  3. Writers, between unlinking a record (publish(0) or publish of its
//     replacement, whose final seq increment is a release) and the plain
//     stores that overwrite its bytes (write and fill after reserve
//     reclaimed it, the second-chance copy): a store-store fence at the top
//     of each round of reserve's loop, so before any plain store into space
//     an earlier round reclaimed, and so that a reader who sees a new byte
//     sees the changed seq (it pairs with 1).
//  4. Journal writers, after claim.Store and before the plain stores of the
//     record (and of a filler header): a store-store fence, so that a
//     reader who copied an overwritten byte sees the new claim.
//  5. Journal readers (tailJournal, the log writer's cursor.Read), after copying a record
//     and before loading claim: a load-load fence (pairs with 4).
//
// Already ordered on both: a record's bytes before head.Add and before the
// slot store (release); the reader's slot and header loads after s1
// (acquire); a journal record's bytes before tail.Store (release) and the
// reader's copy after its tail load (acquire); everything under a robust
// lock (acquiring CAS, releasing CAS).
//
// # Never acknowledging what is not journaled or logged
//
// An append that cannot take the journal lock in 5 s (held by a live process
// that does not run: stopped, frozen) gives up. For a persistent cache it
// then adds one to the header's gap requests (while still holding the shard
// lock, after the value went into the arena) and its Set or Del returns
// [ErrNotDurable], whatever the durability: the change is in the cache, and
// other processes see it, but the log does not have it until the log
// writer's next snapshot. The log writer treats gap requests != gaps covered as a
// journal gap: it reads the requests' count, takes a snapshot (whose scan
// takes every shard lock, so it sees every value whose request it counted),
// and then stores that count as covered. A request that comes during the
// scan is covered by the next snapshot.
//
// While the log writer cannot write its log (a full disk, an I/O error) it
// stores the error number in failing (release), then wakes the Always
// writers. Set and Del of a persistent cache load failing (one atomic load,
// on the same line as the logged position they read anyway) before they take
// the shard lock, and refuse with [ErrPersistFailing] (nothing changed); an
// Always writer already waiting returns [ErrNotDurable] wrapping it (its
// change is in the cache and the journal). A change that passed the check
// just before failing was set is in the journal: the log writer, when it can
// write again, re-reads the journal from the last position it knows to be on
// disk (and lowers logged to it first), or snapshots if the journal lapped
// it, and only then clears failing. So nothing acknowledged is lost to the
// fault, and nothing is acknowledged during it.
//
// # A damaged space (bytes no writer wrote)
//
// A crash leaves only states the repair above knows; a stray write into the
// arena, a bad image of it or a process scribbling over it can leave any
// bytes at all. No read of such a space may crash a process, so every
// position, offset, length and count the package reads from shared memory is
// checked before anything is indexed with it, and what fails a check is
// refused, repaired or read as a miss:
//
//   - the space header: Attach checks the geometry (counts, a heap of at
//     least 32 KiB on 64-byte boundaries, every offset inside the region on
//     a 64-byte boundary, the statistics rows, the journal and the shards in
//     order, every sum overflow-safe) and returns ErrCorrupt; the process
//     keeps its own copy of what it checked (offsets, stride, the rows it
//     sums), so a header damaged after Attach moves nothing it indexes.
//   - a slot word (hit path): the offset must be a record boundary of the
//     shard's heap (one subtraction and two tests, as cheap as the bounds
//     check it replaced) and every length from the header copies must fit:
//     else the slot is skipped, a miss.
//   - a slot word (under the lock: find, insert, Keys, Inspect, Scan, the
//     sweeper): the same check plus the header's lengths
//     (recAt); a slot that fails it is cleared and counted as a repair.
//   - head and tail of each log (main, small): tail <= head, at most the
//     log's size apart, both on a record boundary; a record at a tail
//     (reserve) or on the walk from it (repair, Verify) must have a size on
//     a boundary inside the live log and the log, a known kind (in the
//     small log: an item, a negative record or a filler), lengths inside
//     its size, and a loading record at most 1088 bytes. Anything else resets the shard (every
//     entry of it is dropped, counted as a repair); Verify reports it as
//     ErrCorrupt. Every walk advances by at least 64 bytes over at most a
//     heap, and reserve's loop either resets once or makes progress, so no
//     damage makes one endless.
//   - the registry: the count is capped at MaxCaches, ids are taken modulo
//     it; Use of a name whose stored options no longer validate or match
//     returns an error (ErrInvalidConfig, ErrOptionsConflict).
//   - the statistics rows: Stats sums the rows Attach checked, whatever
//     the header's row count says later.
//   - the journal: positions are masked by the capacity and records are
//     decoded only from bounds-checked copies (see Watch and the journal). A
//     claim more than a capacity past tail, which no writer leaves (a record
//     takes less than half the journal), is replaced by the next append's,
//     so readers stop seeing a lap for ever. A durable position past tail
//     (the log writer stores only positions it read) acknowledges no Always
//     write, and the log writer's next Durable replaces it.
//
// So a damaged space gives ErrCorrupt (Attach, Verify), a miss, a refused
// or retried operation, or a shard reset that drops its entries; never a
// panic, never a hang. A value returned is the bytes of a record whose key
// matched in full; the arena has no checksums, so damaged value bytes read
// as they are. The fuzz package's FuzzArena (strictArena) holds the package
// to this; TestDamagedSpaceNeverPanics and TestAttachRefusesImpossibleGeometry
// keep one case of each check.
//
// # Counters, compare-and-swap, tags and Clear
//
// Add, CompareAndSwap and SetIfAbsent decide and write under the key's
// shard lock, so each is one atomic step for every process; their write is
// a Set's (a new record, the slot republished in the seqlock, one journal
// record), so readers stay lock-free and a crash leaves what a crash in Set
// leaves. InvalidateTag and Clear walk the cache's shards and drop each
// matching item as Del does; atomic.go and tags.go hold the design (why the
// walk is eager, what a crash in it leaves, how watchers and the log hear of
// each removal).
//
// # Distributed caches (a second tier: package bridge, Redis)
//
// A cache named in Space.Distribute reads its Remote on a miss (in the
// loading process, under the loading record) and writes it before the arena
// (a Set then drops the key locally); the hit path does not change.
// Invalidate and InvalidateAll, called by the master's bridge for Redis's
// invalidations and on a lost connection, drop the key's item (or mark it
// stale in place: its deadline becomes now, inside the bucket's seqlock)
// and every loading record of the key, so a load that may have read an old
// value stores nothing. remote.go holds the design; docs/cache.md
// ("Distributed caches") the read, write and recovery paths.
//
// # Caveats
//
// Values are copied in and out: a slice passed to Set may be reused after Set
// returns, and what Get returns belongs to the caller (a hit's one
// allocation: its copy; GetInto and GetAppend append into a buffer the
// caller reuses and allocate nothing on a hit). Records are never
// updated in place, but for failInPlace, an Add to an existing counter
// (addInPlace) and a distributed cache's stale mark (invalidateSlot), all
// inside their bucket's seqlock. The race
// detector cannot see the arena: the package's multi-process model test,
// kill -9 test and Verify are its proof.
package cache
