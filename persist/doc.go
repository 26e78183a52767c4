// Package persist makes cluster2's persistent caches survive restarts and
// kill -9: a write-ahead log of every mutation (segLog: preallocated
// segments, one write and one fdatasync per batch),
// snapshots that bound its length, and a replay into the arena before the
// workers start.
//
// # Model
//
// The cache manager (the master, or a standalone process, per
// Config.Cache.Mode) owns the log. Workers never touch it: every Set, Del,
// expiry and eviction of a persistent cache appends a record to the cache
// space's journal in the arena (see package cache), and the manager's loop
// ([Manager.Run]) copies those records into the log in batches. Durability is
// per cache or per cluster:
//
//   - Never: records are written to the log file, never fsynced by us.
//   - EverySecond (the default): the log is fsynced at most a second after a
//     write; a crash of the machine loses at most about a second.
//   - Always: Set returns after its record is fsynced. Writers wake the
//     manager, which batches whatever is in the journal into one write and
//     one fdatasync (group commit: it waits up to 100 µs for as many Always
//     records as the last fsync carried), then publishes the durable
//     position.
//
// # Files (format: changing it bumps the magic)
//
//	DIR/wal/00000000000000000001 …   segments, named by their first entry's index:
//	                                 { uvarint length │ record }… │ zeros (the preallocated tail)
//	DIR/snapshot                     the last snapshot (replaced by temp file + rename)
//
//	record (24-byte header, then name, key, value):
//	┌────────┬───────┬────────┬──────────┬─────────┬────────┬──────────┬──────────┬──────┬─────┬───────┐
//	│crc32c 4│ op 1  │ dur 1  │ nlen u16 │ klen u16│ 0 u16  │ vlen u32 │ exp i64  │ name │ key │ value │
//	└────────┴───────┴────────┴──────────┴─────────┴────────┴──────────┴──────────┴──────┴─────┴───────┘
//	crc32c (Castagnoli) covers everything after it. op: define, set, del, expire, evict.
//	exp: for set, the absolute deadline (unix ns, 0 = never); for define, the cache's Expire (ns).
//	dur: for define, the cache's Durability.
//
//	snapshot: "C2SNAP01" │ wal index u64 │ { uvarint length │ record }… │ "C2SNEND1" │ count u64 │ crc32c u32
//	(crc32c of every byte before the footer). The records are the definitions of every persistent
//	cache, then their live entries.
//
// # Recovery
//
// [Open] reads the snapshot (if any), then every log segment, checking every
// record's checksum. A torn last record (the crash came in the middle of a
// write: a length past the end of the file, a bad checksum followed only by
// zeros, or zeros followed by data that a crash of the machine left behind
// the last synced entry) is cut off and reported in [Recovery]. Any other damage stops start-up
// with an error wrapping ErrCorrupt that names the file and the offset, unless
// Options.Salvage asks to keep what comes before it (reported too). Nothing is
// silently dropped. [Manager.Replay] then applies the snapshot and the log
// entries after its index to the arena; entries whose deadline passed are not
// resurrected.
//
// # Snapshots
//
// When the log has grown past CompactRatio times the live data (and at least
// CompactMin bytes), or when the journal overwrote records the manager had not
// read (it was stopped too long), the manager notes the log's last index I,
// writes a snapshot of the arena's persistent caches to a temp file, fsyncs
// it, renames it over the old one, fsyncs the directory, and only then drops
// the log's entries up to I. The snapshot is taken shard by shard while
// writers go on: every mutation it may have missed or half-seen is in the log
// after I, and replaying those in order over it yields the latest value of
// every key. A crash at any step leaves either the old snapshot with the whole
// log, or the new one with a log that still holds everything after I.
//
// # Caveats
//
// A value of a persistent cache must fit in a journal record (a quarter of the
// journal). The log holds whole values: a cache with large, often rewritten
// values compacts often.
package persist
