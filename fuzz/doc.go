// Package fuzz holds cluster2's whole-system fuzz targets, beyond the
// per-package ones (cache FuzzOps, persist FuzzRecover, ring FuzzRecords,
// emitter FuzzFrame, the root's FuzzConfig). It has no code of its own: the
// targets are its tests, and .ci/run runs each of them for a few seconds
// like every other `func Fuzz` of the module.
//
//   - FuzzArena: an arena whose bytes are random or damaged (a real arena of
//     a cache space, the supervision region and a ring, copied into a fresh
//     memfd and changed where the input says) is mapped with shm.Open and
//     attached the way a process does: cache.Attach, Verify, reads and
//     writes, the internal/proc region, ring.Attach with a consumer and a
//     producer. Every step returns an error or a clean result: never a panic,
//     never a hang (every step is bounded; a step that overruns fails).
//     strictArena is on: the cache's reads and writes of a damaged space
//     are held to that too, like shm.Open, cache.Attach, the supervision
//     region and the ring (package cache checks every position, offset and
//     length it reads from the arena: see its doc, "A damaged space").
//     TestArenaFindings keeps the inputs that panicked the cache before.
//   - FuzzDataDir: a data directory written by a real persist.LogWriter from a
//     known sequence of Always Sets and Dels (a snapshot, then several
//     segments), damaged where the input says (bytes changed, zeroed,
//     truncated, a file removed or added), then persist.Open and Replay into
//     a fresh space. Either a CorruptError comes back, or the space holds the
//     model's state after some prefix of the sequence that includes every
//     record before the damage: nothing before the damage is lost, nothing is
//     invented. With strictRecovery (on: issue 12 items 11 and 12, kept by
//     persist's checkpoint) a damaged or missing durable record must be a
//     CorruptError: without Salvage no acknowledged record may be lost at all.
//     The directory includes the checkpoint sidecar, damaged like the rest.
//   - FuzzTwoProcesses: the input drives two attachments of one arena in two
//     real processes (the test and a child it re-executes): rounds of Set,
//     Del, Get with a loader and LeaveIfNotNull Sets run concurrently in both,
//     each process on the keys the round gives it, every answer checked
//     against a sequential model; after each round both processes read every
//     key and must agree with the model.
//
// Run one with `go test -run '^$' -fuzz '^FuzzArena$' -fuzztime 5s ./fuzz`.
// The seed corpora are in testdata/fuzz/; a finding is written there too and
// fails the plain `go test` from then on, until it is fixed.
package fuzz
