// Package persist makes cluster2's persistent caches survive restarts and
// kill -9: a write-ahead log of every mutation (segLog: preallocated
// segments, one write and one fdatasync per batch),
// snapshots that bound its length, and a replay into the arena before the
// workers start.
//
// # Model
//
// The log writer owns the log: one process of the cluster, the master or the
// cache manager (a standalone process that runs nothing else), per
// Config.Cache.Mode, runs a [LogWriter]. "Log writer" names that role
// everywhere in cluster2, "cache manager" only the standalone process.
// Workers never touch the log: every Set, Del, expiry and eviction of a
// persistent cache appends a record to the cache space's journal in the
// arena (see package cache), and the log writer's loop ([LogWriter.Run])
// copies those records into the log in batches. It reaches the space through
// one door, the [Journal] interface that package cache's Space.Journal
// returns: persist imports no cache type. Durability is per cache or per
// cluster:
//
//   - Never: records are written to the log file, never fsynced by us.
//   - EverySecond (the default): the log is fsynced at most a second after a
//     write; a crash of the machine loses at most about a second.
//   - Always: Set returns after its record is fsynced. Writers wake the
//     log writer, which batches whatever is in the journal into one write and
//     one fdatasync, then publishes the durable position (group commit,
//     below).
//
// # Group commit (the one protocol between a cache's writers and the log writer)
//
// The log writer and the writers of persistent caches
// share five words of the journal header in the arena (see package cache's
// layout): tail (writers), logged and durable (the log writer: everything
// below logged is in its log, everything below durable is on disk as its
// durability asks), failing (the log writer), and two futex Events, one the
// log writer sleeps on and one the Always writers sleep on. The writer's
// half is in package cache (durable.go); the log writer's in [LogWriter.Run].
//
//	writer (any process, package cache)       log writer (LogWriter.Run)
//	───────────────────────────────────       ──────────────────────────
//	refuse if failing (cache.ErrPersistFailing)
//	wait while tail - logged > journal/2      (throttle: ~1 s at most)
//	append its record, release the shard lock
//	Always: wake the log writer's Event  ──▶  read what the journal holds;
//	        sleep on the durable Event         fewer Always records than the
//	        (one sleeper per process:          last fsync carried? wait up to
//	        the others wait on a channel       groupWait (100 µs) for more,
//	        it closes)                         each writer's record wakes it;
//	                                           one write, one fdatasync,
//	        durable >= its record end?  ◀──    then store logged and durable,
//	        return (acknowledged)              wake the durable Event
//
// So the writers released by one fdatasync, which come back with their next
// records a few tens of µs apart, share the next one. A lone writer never
// waits; after a group shrinks one fdatasync waits groupWait and the next
// expects the smaller group. Never and EverySecond records do not wake the
// log writer: it sleeps up to 10 ms between batches, and the append that
// fills the journal past a quarter of what it has logged wakes it. In the
// terminology of the Go memory model, the log writer's store of durable
// synchronizes before the return of every Set whose record ends at or before
// it.
//
// An Always writer checks, every 50 ms of sleep, that the log writer lives;
// one dead for 10 s (the time for the master to restart a cache manager),
// none at all, a failing log or the end of the writer's context return
// ErrNotDurable: the change is in the cache and the journal, not known to be
// on disk. A log writer killed at any step leaves logged and durable at
// values that were true; its successor fdatasyncs the log before it stores
// durable again ([LogWriter.Resume]) and re-logs at most what was written after
// the last logged (records are idempotent sets and deletes). docs/cache.md
// ("Group commit, and who waits how") has the measurements behind each step.
//
// # Files (format: changing it bumps the magic)
//
//	DIR/lock                         flocked by the LogWriter that has DIR open; holds its pid
//	                                 (and a second line while an old directory is upgraded)
//	DIR/wal/00000000000000000001 …   segments, named by their first entry's index:
//	                                 { uvarint length │ record }… │ zeros (the preallocated tail)
//	                                 │ 2 checkpoint slots of 512 bytes (the segment being written)
//	DIR/wal/checkpoint               the checkpoint sidecar: 2 slots of 512 bytes
//	DIR/snapshot                     the last snapshot (replaced by temp file + rename)
//	DIR/salvaged-<time>/             what recovery dropped from the log, kept (never deleted)
//
//	record (24-byte header, then name, key, value):
//	┌────────┬───────┬────────┬──────────┬─────────┬────────┬──────────┬──────────┬──────┬─────┬───────┐
//	│crc32c 4│ op 1  │ dur 1  │ nlen u16 │ klen u16│ 0 u16  │ vlen u32 │ exp i64  │ name │ key │ value │
//	└────────┴───────┴────────┴──────────┴─────────┴────────┴──────────┴──────────┴──────┴─────┴───────┘
//	crc32c (Castagnoli) covers everything after it. op: define, set, del, expire, evict, set-meta.
//	exp: for set and set-meta, the absolute deadline (unix ns, 0 = never); for define, the cache's Expire (ns).
//	dur: for define, the cache's Durability; for set-meta, the cache's flags of the value (not 0:
//	package cache's counter 1, tagged 2, whose value is its tag list then the value). Set-meta
//	(op 6) came after the other five: a log without it reads as before, and a reader that
//	predates it refuses it (an unknown op: a corrupt entry) instead of misreading it.
//
//	checkpoint slot (slot seq%2 of a segment's tail or of the sidecar; the newest whole one
//	of the four, with the log's nonce, counts):
//	┌──────────┬─────────┬───────┬───────┬────────┬─────────┬────────┬─────────┬──────────┐
//	│"C2CKPT02"│ nonce 8 │ seq 8 │ seg 8 │ dOff 8 │ dNext 8 │ eOff 8 │ eNext 8 │ crc32c 4 │
//	└──────────┴─────────┴───────┴───────┴────────┴─────────┴────────┴─────────┴──────────┘
//	nonce: random per log. seg: the segment being written; (dOff, dNext): where in it the data
//	the last completed fdatasync covered ends, and the index of the entry there (the durable
//	end); (eOff, eNext): the same for the data written when the slot was.
//
//	snapshot: "C2SNAP01" │ wal index u64 │ { uvarint length │ record }… │ "C2SNEND1" │ count u64 │ crc32c u32
//	(crc32c of every byte before the footer). The records are the definitions of every persistent
//	cache, then their live entries.
//
// The segments are github.com/tidwall/wal's binary format (its tooling reads
// a log closed by Close; a segment being written has its preallocated zero
// tail and slots, which tidwall/wal cannot read): the sidecar, the lock and
// the snapshot are files tidwall/wal ignores.
//
// # The durable end, and what each crash leaves
//
// An acknowledgement (an Always Set returning, EverySecond's second passing)
// follows an fdatasync; the durable end is what the last completed one
// covered. Every sync writes a slot {durable end so far, end of the data}
// into the last 1 KiB of the segment being written (entries never reach it;
// it goes with the zeros when the segment is cut back to its data), and the
// segment's one fdatasync makes the data and the slot durable together; once
// it returns, the durable end moves to the end of the data (in memory), and
// the next sync's slot says so. When no sync follows within 10 ms the
// LogWriter writes a sidecar slot saying it (settle), so an idle log's
// checkpoint names everything acknowledged; creating a segment, Open and
// Close write the sidecar too. Where a crash (power loss; kill -9 keeps the
// page cache, so it tears nothing but a write in progress) can come:
//
//   - during a write or its fdatasync: past the durable end the segment may
//     hold any mix of the new data and zeros, the slot old or new. Nothing
//     there was acknowledged.
//   - between the fdatasync's return and the next slot: the newest slot
//     names the batch just acknowledged as written, not as durable; the batch
//     is on disk, so only damage to the disk itself (not a crash) can hurt
//     it, and recovery would then cut it as torn. This window lasts until the
//     next sync (under load) or 10 ms (idle).
//   - while a slot is written: that slot is torn, the other (older) one
//     counts: its durable end is lower, which only makes recovery cut more
//     readily past it (the same window as above, one batch further back).
//   - while a segment rolls: the full one is cut back to its data (its
//     slots go) and fsynced before the next is created; the new one's name is
//     fsynced into the directory and a sidecar slot names it, durable from
//     its start. So every segment but the last is whole on disk, and a
//     missing last segment is noticed.
//   - at Open: what a previous process wrote (a log writer killed between its
//     write and its fdatasync leaves that batch in the page cache) is
//     fdatasynced and a settled sidecar slot written before anything is
//     published as durable; Resume syncs again before releasing the Always
//     writers that waited for the dead log writer.
//
// The cost: one more 4 KiB page in each fdatasync. Measured interleaved,
// fdatasync p50 346 µs without a slot, 378 µs with it in the tail, 585 µs
// with it in a file of its own fdatasynced alongside (two flushes).
//
// # Recovery
//
// [Open] refuses a data directory other users can write to (ErrUnsafeDir)
// and one another process has open (ErrLocked, naming its pid), opens every
// file with O_NOFOLLOW (a planted link is refused, its target untouched),
// then checks the log against the checkpoint. The rule:
//
//   - Before the durable end, the log must be whole: damage (a bad checksum,
//     zeros where an entry should start, a length past the end), a log that
//     ends before the durable end or whose entry there has another index, a
//     missing checkpoint while the log has data (but for a directory of the
//     release before checkpoints, below), or a missing segment named
//     by the checkpoint, is a *CorruptError (file, offset). So is damage
//     anywhere in a segment but the last, and (found by [LogWriter.Replay])
//     any gap in the indexes: between two segments, or between the snapshot
//     and the first segment (a missing snapshot, or a missing first segment).
//   - Past the durable end (in the last segment only), everything from the
//     first damaged entry on is cut off: torn writes, unsynced pages that
//     reached the disk out of order (zeros followed by data). Nothing there
//     was acknowledged. It is reported in [Recovery] (TornBytes) and logged,
//     and the bytes cut are kept in DIR/salvaged-<time>/.
//
// Options.Salvage starts anyway: it keeps the log up to the damage (or the
// gap) and moves the rest (the segments after it, and the damaged segment's
// tail) into DIR/salvaged-<time>/, reported in Recovery.Salvaged. Nothing is
// silently dropped, and nothing recovery drops is deleted. [LogWriter.Replay]
// then applies the snapshot and the log entries after its index to the
// arena; entries whose deadline passed are not resurrected.
//
// # Upgrading from the release before checkpoints
//
// A directory that release wrote has no sidecar and no slots. Open takes a
// directory whose log has data but no sidecar as one of that release only
// when that is proven: no segment carries a checkpoint slot of any nonce in
// its tail (every sync leaves one in the segment being written), and DIR/lock
// did not hold a pid of this release (the old one made no lock file; this one
// writes its pid at every Open, so a cleanly closed log, whose segments were
// cut back to their data, still shows it). Then it recovers the log by the
// old rule: the log ends at the first zero byte where an entry should start;
// the first bad entry is cut as torn (kept, reported in TornBytes) when it
// runs past the end, starts with zeros, or has only zeros after it; one
// failing its checksum with data after it is a *CorruptError. It logs one
// WARN, sets Recovery.Legacy, and writes the checkpoint (the sidecar, after
// fdatasyncing the log): the next Open uses the rule above. While it does,
// DIR/lock notes the upgrade (fdatasynced), so an Open that fails or dies
// before the checkpoint is durable leaves the directory an old one for the
// next. Anything else without a sidecar (a directory of this release that
// lost it) is a *CorruptError naming the missing checkpoint.
//
// # Snapshots
//
// When the log has grown past CompactRatio times the live data (and at least
// CompactMin bytes), or when the journal overwrote records the log writer had
// not read (it was stopped too long), the log writer notes the log's last
// index I, writes a snapshot of the arena's persistent caches to a temp
// file, fsyncs it, renames it over the old one, fsyncs the directory, and
// only then drops the log's entries up to I. The snapshot is taken shard by shard while
// writers go on: every mutation it may have missed or half-seen is in the log
// after I, and replaying those in order over it yields the latest value of
// every key. A crash at any step leaves either the old snapshot with the whole
// log, or the new one with a log that still holds everything after I.
//
// # Faults of the disk
//
// A write or fdatasync of the log that fails (a full disk: the next segment
// cannot be preallocated; an I/O error) does not stop the log writer:
// [LogWriter.Run] marks the cache space failing (Sets and Dels of persistent
// caches are refused with cache.ErrPersistFailing until it clears), logs the
// error at ERROR, rewinds its journal reader to its last fdatasync, and
// retries with back-off (Options.RetryMin, RetryMax) to reopen the log (cut
// back to its last whole entry, as [Open] does) and log the journal again
// from there, or snapshot if the journal lapped. Only when that is fsynced
// does it clear the failure. A resumed log writer fdatasyncs the log before it
// says anything durable: its predecessor may have died between a write and
// its fdatasync.
//
// # Caveats
//
// One process at a time opens a data directory (DIR/lock); the kernel drops
// the lock when the process dies, kill -9 included. The directory must be
// ours and not group- or other-writable; DIR itself may be a link, the
// files in it may not.
//
// A value of a persistent cache must fit in a journal record (a quarter of the
// journal). The log holds whole values: a cache with large, often rewritten
// values compacts often.
package persist
