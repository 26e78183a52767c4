// Package ring is a lock-free single-producer single-consumer byte ring in a
// shared arena: one process writes variable-length records, another reads
// them in order, with no system call and no allocation per record while both
// are busy.
//
// # Model
//
// A ring occupies Size(capacity) bytes of an arena: a 384-byte header and a
// data area of capacity bytes, a power of two. One process lays it out with
// [Init] (usually in the init function of [shm.Arena.Region]); every process
// that uses it calls [Attach]. The writing process opens the producer end
// ([Ring.Producer]) and the reading process the consumer end
// ([Ring.Consumer]); each end records its process's owner token in the
// header, so that a waiting side can tell that its peer died ([ErrPeerDead]).
//
// Positions (tail, read, head) are byte counts since Init, never wrapped;
// position p lives at data offset p & (capacity-1).
//
// # Layout (format: changing it changes the arena layout version)
//
//	off+0    ┌──────────┬──────────┬──────────┬──────────┬────────┬────────┐
//	         │ magic u64│ cap u64  │ prodTok  │ consTok  │ lock 8 │ pad 32 │  written at Init / on open
//	off+64   ├──────────┴──────────┼──────────┴──────────┴────────┴────────┤
//	         │ dataReady waiter(8) │ spaceFree waiter(8) │ pad 48           │  written by sleepers only
//	off+128  ├─────────────────────┴──────────────────────────────────────────┤
//	         │ tail u64 (producer)                           │ pad 120        │
//	off+256  ├───────────────────────────────────────────────────────────────┤
//	         │ read u64 (consumer) │ head u64 (consumer)    │ pad 112        │
//	off+384  ├───────────────────────────────────────────────────────────────┤
//	         │ data: capacity bytes of records, 8-byte aligned               │
//	         └───────────────────────────────────────────────────────────────┘
//
// A record is an 8-byte header word followed by its payload, padded to a
// multiple of 8 bytes:
//
//	┌────────────────────────────┬─────────────┬─────────────┬─────────────┐
//	│ length u32 (bit 31: pad)   │ type u32    │ payload     │ zero pad    │
//	│ 8 + len(payload)           │ caller's    │ len bytes   │ to 8 bytes  │
//	└────────────────────────────┴─────────────┴─────────────┴─────────────┘
//	 └───── one little-endian u64, stored atomically ─────┘
//
// The header is one atomic 64-bit word: length | type<<32. The length of an
// ordinary record counts the header, so a committed header is never zero,
// even for an empty payload of type 0; a zero word means "nothing committed
// here yet". A padding record has bit 31 of its length set, type 0, and its
// length is the number of bytes it covers (a multiple of 8, at least 8).
//
// Wrap rule: a record never crosses the end of the data area. When the next
// record does not fit between the tail and the end, the producer first
// commits a padding record covering the rest of the lap, then writes the
// record at offset 0. A record whose aligned size exceeds the capacity
// returns [ErrTooLarge].
//
// # Who writes what
//
//   - tail: the producer only. It is advanced over a record's bytes (the
//     claim) before any of them is written; to store it rarely, the producer
//     claims ahead, up to an eighth of the capacity (never past the space
//     it knows free), and writes the following records inside that claim.
//   - record bytes in [head, tail): the producer writes the payload, then
//     stores the header word (commit). Unblock, or a newly opened producer,
//     may store a padding header over an uncommitted claim of a dead
//     producer (under the ring's recovery lock, so one at a time).
//   - read and head: the consumer only. To hand space back it stores read
//     past the records it delivered, zeroes their bytes, then stores head
//     past them. It does so every 64th of the capacity, when Poll finds
//     the ring empty, and when Read starts to wait (so a producer waiting for
//     space is never left waiting on space already consumed). The producer
//     never writes at or beyond head + capacity.
//   - producer/consumer tokens: the opening end, by CAS. A waiter's sleeping
//     flag: its sleeper sets it, the sleeper or the waker that wakes it
//     clears it; its seq: wakers add one.
//
// # Memory order
//
// All shared words are sync/atomic typed atomics (sequentially consistent),
// but one: the header word that Write, Commit and WriteBatch store to commit
// records is a release store only on amd64 (see "Commits without a fence"
// below). Payload bytes are written plainly before
// the release store of their header word and read plainly after the acquiring
// load that observed it: Commit synchronizes before the delivery of the
// record. The consumer's zeroing is plain, before the release store of head;
// the producer writes into space only after an acquiring load of head that
// covers it, so it always finds zeros there. The producer caches head and reloads it only when the cached
// value says the ring is full; the consumer caches tail (used only to bound
// headers) the same way. Sleeps use a waiter (wait.go; a seq u32 futex word
// and a sleeping u32 flag, each end's own): a side announces, re-checks
// its condition, then sleeps; the other side makes the condition true (the
// header or head store) before it loads the waiter count, so a wake costs a
// system call only when somebody sleeps, and none is lost.
//
// # Commits without a fence
//
// A sequentially consistent store is an XCHG on amd64: it drains the
// producer's store buffer, so every commit waited for the cache misses of its
// payload's stores (the lines come back from the consumer's core; profiles
// put most of the producer's time there). On amd64 the producer commits with
// a plain MOV instead (fence_amd64.s): under x86-TSO it is not reordered with
// the earlier payload stores, so it is a release store, and the consumer's
// acquiring load is unchanged.
//
// What the MOV does not order is the producer's next load, of the consumer's
// sleeping flag, which the processor may satisfy while the header still sits
// in its store buffer. So one interleaving loses a wake: the producer loads
// the flag (0), the consumer announces and re-checks (the header is not
// visible yet) and sleeps, the header becomes visible. Only a commit whose
// flag load came before the announcement was visible can be missed; its
// header becomes visible when the store buffer drains: in nanoseconds (a
// store buffer holds a few dozen stores, and an interrupt or a switch of the
// producer's thread drains it). So after its re-check a consumer that is about
// to sleep, still announced, re-checks the ring drainChecks (256) times more,
// about a microsecond, and takes a record found then as if woken
// (ConsumerStats.Rescues counts them, with records that simply came in that
// microsecond). Every later commit's flag load comes after the announcement
// and sees it. Should a header ever take longer than that to drain, its
// record waits for the next commit or the end of the sleep (PeerCheck, 50 ms
// by default): latency, never a hang.
//
// We measured and rejected two other ways. membarrier(2)
// (MEMBARRIER_CMD_GLOBAL_EXPEDITED before every consumer sleep, the producer
// registered) is rigorous, but in this VM it made every sleep 10-13 µs
// dearer (its inter-processor interrupts are VM exits;
// BenchmarkRingPingPong/futex went from 4-6 to 16-19 µs), and it interrupts
// every processor running any registered process, which in a prefork server
// is every worker. A first futex sleep of 50 µs before the re-check made
// every futex wake-up slow (27 µs instead of 3: arming and cancelling a short
// timer costs VM exits here), as did 1 ms (14 µs).
//
// Padding, Abort and recovery stores stay sequentially consistent, and so do
// all stores on other architectures (fence_other.go).
//
// Why a recoverer may run while the consumer consumes: it walks the records
// from read towards tail, loading each header and then read again. The
// consumer stores read past a record before zeroing it, so a header that the
// recoverer saw zeroed is always followed by a reload of read past it, and the
// walk restarts; a zero header with read still at or below it is the
// uncommitted claim (nothing after a claim is committed: the producer commits
// in order), which the consumer cannot pass, so nothing else writes it.
//
// # Crashes
//
// What a producer killed at each step leaves behind:
//
//   - before storing tail: nothing; the claim did not happen.
//   - after storing tail, before or while writing the payload: a zero header
//     where its next record starts (the first zero header between read and
//     tail: records are committed in order), garbage behind it, and zeros up
//     to tail. The consumer stops there
//     (Read returns ErrPeerDead once it sees the producer dead); [Ring.Unblock]
//     or the next [Ring.Producer] commits the claim as padding, which the
//     consumer skips and zeroes.
//   - after the header store: a whole record, delivered normally (a store the
//     killed process issued, even one still in its store buffer, reaches
//     memory: the process's death switches its thread out).
//
// A consumer killed after storing read but before zeroing leaves consumed,
// unzeroed bytes below read; the next [Ring.Consumer] zeroes them and
// publishes head. Records delivered but not yet published (at most a
// 64th of the capacity, or Read's last batches before it waits) are
// undelivered as far as the ring knows: the next consumer gets them again
// (at least once across a consumer's death).
//
// A process killed while announced as a sleeper costs its peer one wasted
// wake system call; a process killed holding the recovery lock is taken over
// by the next locker ([shm.Lock]).
//
// A corrupt header (a length out of range, a record crossing the end or
// beyond tail) makes Poll and Read return [ErrCorrupt], sticky, without
// moving past it or modifying anything.
//
// # Caveats
//
// A Producer and a Consumer are each used by one goroutine at a time; a ring
// has one of each at a time (ErrBusy guards against a second live process,
// not against two handles in one process). The payload passed to Poll's and
// Read's callback is the ring's own memory: it is valid only during the call.
// The race detector does not see arena memory; the ring is proven by the
// model, fuzz and cross-process tests of this package.
package ring
