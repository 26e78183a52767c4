package cache

import "unsafe"

// Compile-time proofs of the layout: each pair fails to build when a size
// drifts from the format.
var (
	_ [spaceHeaderSize - unsafe.Sizeof(spaceHeader{})]byte
	_ [unsafe.Sizeof(spaceHeader{}) - spaceHeaderSize]byte
	_ [0 - unsafe.Offsetof(spaceHeader{}.lock)%64]byte
	_ [128 - unsafe.Offsetof(spaceHeader{}.lock)]byte
	_ [unsafe.Offsetof(spaceHeader{}.lock) - 128]byte
	_ [192 - unsafe.Offsetof(spaceHeader{}.registry)]byte
	_ [unsafe.Offsetof(spaceHeader{}.registry) - 192]byte
	_ [regEntrySize - unsafe.Sizeof(regEntry{})]byte
	_ [unsafe.Sizeof(regEntry{}) - regEntrySize]byte
	_ [shardHeaderSize - unsafe.Sizeof(shardHeader{})]byte
	_ [unsafe.Sizeof(shardHeader{}) - shardHeaderSize]byte
	_ [perCacheSize - unsafe.Sizeof(perCache{})]byte
	_ [unsafe.Sizeof(perCache{}) - perCacheSize]byte
	_ [bucketSize - unsafe.Sizeof(bucket{})]byte
	_ [unsafe.Sizeof(bucket{}) - bucketSize]byte
	_ [recHeader - unsafe.Sizeof(recHdr{})]byte
	_ [unsafe.Sizeof(recHdr{}) - recHeader]byte
	_ [statsRowSize - unsafe.Sizeof(statsRow{})]byte
	_ [unsafe.Sizeof(statsRow{}) - statsRowSize]byte
	_ [journalHdrSize - unsafe.Sizeof(journalHdr{})]byte
	_ [writerCountersSize - unsafe.Sizeof(writerCounters{})]byte
	_ [unsafe.Sizeof(writerCounters{}) - writerCountersSize]byte
	_ [unsafe.Sizeof(journalHdr{}) - journalHdrSize]byte
)

// stripe picks the statistics stripe of the calling goroutine from the address
// of its stack: goroutines run on different stacks, so two goroutines on two
// cores rarely bump the same cache line, and the choice costs no call and no
// shared state. Stacks start at 2 KiB and double as they grow, so the bits
// from 2 KiB up tell neighbours apart at every size: two goroutines whose
// stacks are 2 KiB, 8 KiB or 32 KiB apart always get different stripes.
// (Taking the bits from 8 KiB up put two fresh 2 KiB stacks on one stripe
// about half the time: parallel hits then cost 60 ns instead of 17.) A moved
// stack only moves the counting to another stripe; the sums stay exact.
func stripe() uint64 {
	var x byte
	p := uintptr(unsafe.Pointer(&x))
	return uint64(p>>11^p>>15^p>>19) & (statStripes - 1)
}
