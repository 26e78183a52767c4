// Package order holds the memory-ordering primitives that cluster2's
// shared-memory protocols need beyond what sync/atomic gives, one small file
// set per architecture: order_amd64.{go,s}, order_arm64.{go,s}, and a
// fallback built from sequentially consistent atomics (order_other.go) for
// every other architecture.
//
// # What sync/atomic gives
//
// Go's atomics are sequentially consistent (the Go memory model: "all the
// atomic operations executed in a program behave as though executed in some
// sequentially consistent order"). How, per architecture (the compiler's
// intrinsics and internal/runtime/atomic):
//
//   - amd64: Load is a plain MOV; Store is XCHG, which is a full fence: it
//     drains the store buffer before any later load executes; Add and
//     CompareAndSwap are LOCK-prefixed, also full fences.
//   - arm64: Load is LDAR (load-acquire), Store is STLR (store-release), RMWs
//     are LDADDAL/CASAL (or LDAXR/STLXR loops). ARMv8 acquire and release are
//     RCsc: an LDAR is never satisfied before an earlier STLR of the same
//     thread is observed, so a Store followed by a Load of another word is
//     ordered (the store-then-load handshake of shm.Event and ring waiters
//     holds as written).
//
// What they do not give is the order of plain (non-atomic) accesses around
// them where only one side is atomic:
//
//   - A plain load before an acquiring load may be satisfied after it. On
//     amd64 (x86-TSO: loads are not reordered with other loads) that cannot
//     happen in the processor, only in the compiler; on arm64 it can: LDAR
//     orders later accesses after it, not earlier ones. A seqlock reader
//     (load seq, plain loads of the data, load seq again) needs [LoadFence]
//     before its final load of seq.
//   - A plain store after a releasing store may become visible before it. On
//     amd64 (x86-TSO: stores are not reordered with other stores) it cannot,
//     in the processor; on arm64 it can: STLR orders earlier accesses before
//     it, not later ones. A writer that publishes "position moved past p"
//     and then overwrites what was below p (the ring consumer's zeroing after
//     it stores read, a journal overwriting records after it stores claim)
//     needs [StoreFence] between the two.
//   - A store followed by a load of another word may be reordered on amd64
//     when the store is a plain MOV (x86-TSO's one relaxation: the load is
//     satisfied while the store sits in the store buffer). [StoreRelease] is
//     such a store on amd64: follow it with [Fence], or use the atomic Store
//     (XCHG), where a later load must see what the other side stored
//     (Dekker's handshake).
//
// # The primitives, per architecture
//
//	             amd64 (x86-TSO)             arm64 (weakly ordered)   other (fallback)
//	StoreRelease MOV                         STLR (= atomic Store)    atomic Store
//	LoadFence    none (inlined away)         DMB ISHLD                atomic RMW
//	StoreFence   none (inlined away)         DMB ISHST                atomic RMW
//	Fence        LOCK OR (full fence)        DMB ISH                  atomic RMW
//
// Each is an assembly function on arm64 (StoreRelease there is the atomic
// Store, which the compiler emits as STLR) and StoreRelease and Fence are on
// amd64: calls the compiler neither inlines nor moves memory accesses across.
// LoadFence and StoreFence are empty Go functions on amd64, inlined away: the
// rule of their use is that a LoadFence is followed at once by a sync/atomic
// load (the re-read it protects) and a StoreFence preceded at once by a
// sync/atomic store or read-modify-write (the publication it protects). The
// compiler treats each sync/atomic operation as a memory operation in its
// own right: it schedules plain loads of the memory state before it ahead of
// it, and keeps every store in program order, so that atomic operation is the
// compiler barrier, and the hit path pays no call for a fence amd64 does not
// need. The fallback relies on an atomic
// read-modify-write of a local word being a full fence in practice on every
// port (it is on ppc64, s390x, riscv64, loong64 and mips); it is
// conservative, never cheaper than sync/atomic.
//
// [PlainRelease] tells whether StoreRelease is cheaper than sync/atomic's
// Store on this architecture (true on amd64 only): code that can do with a
// release store (no later load of another word that must see it) uses it only
// then, and otherwise keeps the atomic Store.
//
// # Caveats
//
// These primitives order accesses of one thread (goroutine, while it runs on
// one) only as the table says; they are not synchronization by themselves
// and the race detector does not know them: use them for memory the detector
// does not see (shared arenas), each use with a comment that names the
// access it pairs with.
//
// qemu-user (7.2, TCG on an amd64 host) does not emulate the RCsc order of
// an STLR followed by an LDAR: it puts its barrier before the store and after
// the load, none between them, and the host's store buffer then lets the
// load pass the store. Under it sync/atomic's Store then Load of another word
// is not sequentially consistent (TestFenceOrdersStoreBeforeLoad sees such
// rounds without Fence, which real arm64 hardware never shows), so
// store-then-load handshakes (ring waiters, shm.Event) can lose a wake-up
// there: a sleep then lasts its bound. Fence is emulated correctly (DMB ISH
// becomes MFENCE).
package order
