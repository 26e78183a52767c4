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
//	off+64   ├──────────┴──────────┼──────────┴──────────┼────────┴────────┤
//	         │ dataReady waiter(8) │ spaceFree waiter(8) │ sleepGen u64    │  written by sleepers only:
//	         ├─────────────────────┼─────────────────────┴─────────────────┤  sleepGen by the consumer,
//	         │ ackGen u64          │ pad 32                                │  ackGen by the producer
//	off+128  ├─────────────────────┴───────────────────────┬───────────────┤
//	         │ tail u64 (producer)                         │ pad 120       │
//	off+256  ├─────────────────────┬───────────────────────┼───────────────┤
//	         │ read u64 (consumer) │ head u64 (consumer)   │ pad 112       │
//	off+384  ├─────────────────────┴───────────────────────┴───────────────┤
//	         │ data: capacity bytes of records, 8-byte aligned             │
//	         └─────────────────────────────────────────────────────────────┘
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
//   - sleepGen: the consumer only, +1 per change: odd from just before Read
//     first announces a futex sleep until a Read finds records without
//     waiting (and at open, when a dead predecessor left it odd); a parking
//     consumer keeps it even. ackGen: the producer only: the odd sleepGen
//     it last saw, stored before its first commit after seeing it (and at
//     open). See "Commits without a fence".
//
// # Memory order
//
// All shared words are sync/atomic typed atomics (sequentially consistent),
// but one: the header word that Write, Commit and WriteBatch store to commit
// records is, on amd64 and while the consumer does not announce futex
// sleeps, a release store only (see "Commits without a fence" below).
// Payload bytes are written plainly before the store of their header word
// and read plainly after the acquiring load that observed it: Commit
// synchronizes before the delivery of the record. The consumer's zeroing is
// plain, between the store of read and the store of head (release; the
// producer writes into space only after an acquiring load of head that
// covers it, so it always finds zeros there); on arm64 the store of read is
// an STLR, which later plain stores may pass, so an order.StoreFence (DMB
// ISHST) keeps the zeroing after it (the recoverer relies on that order; on
// amd64 the fence is free: x86-TSO keeps stores in order). The producer
// caches head and reloads it only when the cached value says the ring is
// full; the consumer caches tail (used only to bound headers) the same way.
// Sleeps use a waiter (wait.go; a seq u32 futex word and a sleeping u32
// flag, each end's own): a side announces, re-checks its condition, then
// sleeps; the other side makes the condition true (the header or head store)
// before it loads the waiter's flag, so a wake costs a system call only when
// somebody sleeps. Both the announcement and, for a wake that matters, the
// condition store are sequentially consistent, so that at least one side
// sees the other and no wake-up is lost.
//
// Per architecture (package internal/order has the primitives and the
// argument): on amd64 (x86-TSO) sync/atomic's Store is XCHG, a full fence,
// and its Load a MOV; the only reordering is a load passing an earlier
// store that sits in the store buffer. On arm64 Store is STLR and Load is
// LDAR; their acquire and release are RCsc, so an LDAR never passes an
// earlier STLR and the store-then-load handshakes hold as written; what
// they do not order are plain accesses on their far side, hence the
// StoreFence above. Elsewhere every store is sync/atomic's.
//
// # Commits without a fence
//
// A sequentially consistent store is an XCHG on amd64: it drains the
// producer's store buffer, so every commit waits for the cache misses of its
// payload's stores (the lines come back from the consumer's core; profiles
// put most of the producer's time there). So on amd64 the producer commits
// with a plain MOV (order.StoreRelease) when it can: under x86-TSO it is not
// reordered with the earlier payload stores, so it is a release store, and
// the consumer's acquiring load is unchanged. What the MOV does not order is
// the producer's next load, of the consumer's sleeping flag, which the
// processor may satisfy while the header still sits in its store buffer: the
// producer loads the flag (0), the consumer announces, re-checks (the header
// is not visible yet) and sleeps, the header becomes visible, nobody wakes
// the consumer. Re-checking for a while before the futex sleep made that
// rare (2 in 4 million commits of 4 KiB records), not impossible: x86-TSO
// bounds the time a store may stay buffered by nothing.
//
// So the consumer says when it may sleep, and the producer says that it
// heard. Before Read first announces a futex sleep, the consumer makes
// sleepGen odd (G, sequentially consistent); a Read that finds records
// without waiting makes it even again (a busy consumer, behind its producer).
// Before each commit the producer loads sleepGen: even, it commits with the
// MOV; odd, it commits with XCHG, and the first time it sees G it first
// stores ackGen = G (XCHG). Before each futex sleep the consumer announces
// (XCHG of its sleeping flag), loads ackGen, re-checks the ring, and sleeps
// up to PeerCheck only if ackGen was G; otherwise it sleeps at most
// unackedSleep (1 ms), doubling with each such sleep up to PeerCheck. Why no
// commit is left unwoken:
//
//   - A commit whose load of sleepGen returned an odd value (G or an
//     older one) is an XCHG, and so is the announcement: whichever comes
//     second in the memory order sees the other (the producer's flag load
//     sees 1 and wakes, or the consumer's re-check sees the header).
//   - A commit whose load returned an even value came before the
//     producer's ack of G, if there is one, in its program order (the
//     consumer stores no other value while it waits with G, the producer's
//     loads of sleepGen never go back, and it acks the first time it sees
//     G), so its MOV is in memory before ackGen = G is: XCHG drains the
//     store buffer.
//     If the consumer's load of ackGen returned G, its later re-check sees
//     the header (x86-TSO: loads in order, one memory order for stores).
//     If it did not, the sleep is bounded: the record is delivered when the
//     sleep ends after its header became visible, or at once by the
//     producer's next commit, which acks and wakes.
//
// The cost: a commit pays one load of sleepGen (on the line of the sleeping
// flag it loads anyway, which the consumer writes only when it changes its
// mind) while the consumer is busy or parks: BenchmarkWritePoll, one
// goroutine, 31-38 ns of CPU per 64-byte record against 33-40 ns without it
// (interleaved runs on the 2-core AMD EPYC VM under a load average of 20,
// where wall-clock figures meant nothing); and an XCHG while the consumer
// may sleep (it then pays a futex wake-up, microseconds, anyway). A consumer
// that goes from busy to sleeping pays one store of sleepGen and a first
// futex sleep with a 1 ms timer (arming and cancelling a timer that short
// costs VM exits: a wake-up from it took about 14 µs against 3 µs in earlier
// measurements), and while its producer stays idle it wakes after 1, 2, 4 ms
// and so on up to PeerCheck: about six extra wake-ups per idle spell. A consumer that
// keeps sleeping between records (a ping-pong) keeps sleepGen odd and sleeps
// unbounded after the first acknowledgement. A parking consumer
// (Options.Park) never makes sleepGen odd, so its producer always commits
// with the MOV: it never sleeps on the futex, and finds every record at its
// next look.
//
// We measured and rejected two other ways. membarrier(2)
// (MEMBARRIER_CMD_GLOBAL_EXPEDITED before every consumer sleep, the producer
// registered) is rigorous, but in this VM it made every sleep 10-13 µs
// dearer (its inter-processor interrupts are VM exits;
// BenchmarkRingPingPong/futex went from 4-6 to 16-19 µs), and it interrupts
// every processor running any registered process, which in a prefork server
// is every worker. A first futex sleep of 50 µs or 1 ms before every sleep
// (not only the first after the consumer stopped being busy) made every
// futex wake-up slow (27 and 14 µs instead of 3).
//
// Padding, Abort and recovery stores are always sequentially consistent, and
// so are all commits on other architectures (order.PlainRelease is false:
// on arm64 a release store is the STLR of sync/atomic's Store, already
// ordered before the LDAR of the flag).
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
// # Files
//
//   - ring.go: the format constants, the header, Options, [Init], [Attach]
//     and the accessors of a [Ring].
//   - producer.go: the writing end: claims, commits (and the commit without
//     a fence), batches, the wait for space.
//   - consumer.go: the reading end: Poll, publication of consumed space,
//     Read's spin, futex sleep and park.
//   - recover.go: [Ring.Unblock], which pads a dead producer's claim away.
//   - spin.go: how a waiting end re-checks, pauses and yields before it
//     sleeps.
//   - wait.go: the waiter (futex word and sleeping flag) that each end
//     sleeps on; a sleep's bound under a context is internal/xtime's Bound.
//   - unsafe.go: the compile-time proofs of the layout above.
//   - hooks.go: the test hooks (nil in production).
//   - pause_*.go, pause_amd64.s, yield_*.go: PAUSE and sched_yield(2), per
//     platform.
//
// # Caveats
//
// A Producer and a Consumer are each used by one goroutine at a time; a ring
// has one of each at a time (ErrBusy guards against a second live process,
// not against two handles in one process). The payload passed to Poll's and
// Read's callback is the ring's own memory: it is valid only during the call.
// The race detector does not see arena memory; the ring is proven by the
// model, fuzz and cross-process tests of this package. Under qemu-user on
// an amd64 host an atomic Store followed by an atomic Load is not ordered
// (internal/order, Caveats), so a wake-up can be lost there (the sleep then
// lasts PeerCheck); on arm64 hardware it cannot.
package ring
