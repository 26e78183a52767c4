// Package shm is the shared arena of a cluster2 cluster: one memfd mapped
// MAP_SHARED by every process, carved into regions by offset, plus the
// primitives that cross processes through it: futex waits and wakes, an
// announce-before-sleeping [Event], and a robust [Lock] that survives the
// death of its owner.
//
// # Model
//
// The master calls [Create]; it hands [Arena.File] to each child as an
// inherited file descriptor, and the child calls [Open]. Every process then
// calls [Arena.Join] (or [Arena.JoinSlot] with the slot the master chose for
// it) and gets a [Proc]: its slot in the process table and an owner
// generation that no other process will ever be given. Locks are stamped with
// that generation, so a waiter can always tell who holds a lock and whether
// that process still lives.
//
// Create reserves every page of the arena at once, and asks for
// transparent huge pages (MADV_HUGEPAGE, in the creator and in every process
// that opens it): the kernel gives a memfd huge pages only when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is "advise" (or
// "within_size" or "always"); with "never", the usual default, the arena
// has small pages and nothing else changes. A lookup among a million cache
// entries misses the TLB at nearly every access; with huge pages it costs
// about 0.7 of its small-page time (docs/BENCHMARKS.md).
//
// Nothing in the arena is a Go pointer. Structures refer to each other by
// [Off], a byte offset from the start of the arena; offset 0 is the header and
// so doubles as nil. Packages reach their structures with [Ptr] and [Bytes],
// which check bounds; the only pointer arithmetic of the module lives in this
// package's unsafe.go.
//
// # Layout (format: changing any of it bumps [LayoutVersion])
//
//	offset 0                                        (HeaderSize = 4096 bytes)
//	┌──────────────────────────────────────────────────────────────────────┐
//	│ magic u64 │ version u32 │ headerSize u32 │ size u64 │ creatorPid u32  │  written once by
//	│ slotCount u32 │ slotsOff u64 │ gen u64 (atomic)  … pad to 64           │  Create, read-only after
//	├──────────────────────────────────────────────────────────────────────┤
//	│ lock Lock(8) │ top u64 │ regionCount u32 │ lockRangeCount u32 … to 128 │  under header lock
//	├──────────────────────────────────────────────────────────────────────┤
//	│ regions[32]    { name [24]byte │ off u64 │ size u64 │ pad 8 }   48 B each│
//	│ lockRanges[64] { off u64 │ count u32 │ stride u32 }             16 B each│
//	└──────────────────────────────────────────────────────────────────────┘
//	offset slotsOff = 4096
//	┌──────────────────────────────────────────────────────────────────────┐
//	│ slots[slotCount] { word u64 (pid<<8 | state) │ token u32 │ role u32 │   │
//	│                    startTime u64 │ joinedAt i64 │ joinedBoot i64 │      │
//	│                    pad to 128 }                                        │
//	└──────────────────────────────────────────────────────────────────────┘
//	offset top (64-byte aligned) … size: regions, bump-allocated, never freed
//
// # Who writes what
//
//   - The header's first line is written by [Create] before the descriptor is
//     shared, and only read afterwards; gen is the one atomic counter there:
//     [Arena.Join] adds one to it to mint an owner generation.
//   - top, the region directory and the lock-range directory are written only
//     under the header lock. A directory entry is filled first and published by
//     storing the new count (release); readers load the count (acquire) and read
//     only entries below it. A process killed under the header lock leaves at
//     worst a filled but unpublished entry and a raised top: leaked space, never
//     a visible half-entry. Whoever recovers the lock has nothing to repair.
//   - A slot's word moves free → claiming(pid) by CAS (the claimer), then
//     claiming → live after token, role, startTime and joinedBoot are written
//     (release);
//     live → releasing → free by CAS, by the owner on [Proc.Leave] or by
//     anyone who proves the owner dead ([Arena.ReleaseSlot], usually the master).
//     A slot is matched to a lock owner only while it is live. A process
//     that replaces its own image (execve) stays live in its slot: its next
//     image takes the slot and token up with [Arena.Resume], which first
//     marks abandoned every lock the token holds (no thread of the previous
//     image survived), so a half-done write under one is repaired as after a
//     death; nothing else changes hands (TestResumeAfterExecve).
//
// # Who is dead
//
// Locks, slots and everything built on them (ring ends, the cache's
// log writer, loaders and sweep lease) are taken over only from a process
// proven dead, by [Arena.Alive] and [Arena.ReleaseSlot]: a false "dead"
// would give a live process's lock to another, a false "alive" only delays a
// takeover. Proof is a /proc/PID/stat that shows a zombie or another start
// time (the pid was reused), ENOENT or ESRCH on /proc/PID/stat while /proc is
// mounted, or ESRCH from kill(pid, 0). When /proc cannot tell (a process out
// of descriptors gets EMFILE; /proc may be missing), kill(pid, 0) decides and
// anything but ESRCH counts as alive, so until /proc can be read again a
// zombie or a reused pid looks alive. The start time a process records in
// its slot is read the way others read it (/proc/PID/stat opened relative to
// /proc: qemu-user fakes the line a process reads for itself by path).
//
// Start time unknown: a process out of descriptors cannot open /proc to
// read its own start time. So the package reads it once when it is loaded
// (init: a process starts with descriptors to spare) and keeps it; Join
// records that, and reads again only if that read failed. Should the slot's
// start time still be 0, the slot's joinedBoot decides: the owner stores
// CLOCK_BOOTTIME (nanoseconds, the clock /proc's start times count in, in
// ticks of 1/100 s) at its join, after it started, so its own start time T
// (ticks) has T×10 ms ≤ joinedBoot. A process now under that pid whose start
// time has T×10 ms > joinedBoot started after the join: it is not the owner,
// and the owner is dead (the pid was reused). A process that started before
// (or within the tick of) the join may be the owner and counts as alive. The
// argument assumes every process of the arena sees one boot clock: not
// processes in different time namespaces (CLONE_NEWTIME) sharing an arena.
//
// # Memory order
//
// All cross-process words are sync/atomic typed atomics, which are sequentially
// consistent on every platform Go supports; the protocols below rely on that
// (in particular the store-then-load handshake of [Event]). Plain loads and
// stores are used only for bytes that are published by a later atomic store and
// read after an atomic load that observed it.
//
// # Caveats
//
// The race detector does not see memory outside the Go heap, so the arena's
// protocols are proven by the cross-process, kill -9 and model tests of this
// module, not by -race. A Go pointer into the arena ([Ptr], [Bytes]) is valid
// until [Arena.Close]; using it afterwards faults.
package shm
