// Package soak holds cluster2's soak tests: long runs of whole clusters
// under load and faults, each skipped unless CLUSTER2_SOAK is set (never in
// CI by default; they compile and skip in every normal run), and the CI
// tests that run their faults once, bounded in seconds. Its clusters are
// started with internal/clustertest.
//
// # The soaks
//
// TestSoak is the chaos soak (issue 8): a two-worker cluster with a
// persistent standalone cache under loopback load while a driver, at random
// moments every 2 to 8 s, kill -9s workers and the cache manager (half of
// those kills between a log write and its fdatasync), sends SIGHUP rolling
// restarts, fills the arena past capacity, fills the data directory (a small
// tmpfs, when the soak may mount one) and frees it again, pauses/resumes
// workers, exhausts the master's file descriptors while a killed worker
// must be respawned (issue 13: the respawn is retried until the descriptors
// are back), and upgrades the master in place (issue 15, SIGUSR2): to a good
// build, the other of two copies of the test binary renamed in turn over the
// path the cluster runs from (the upgrade must end "done", the master the
// same process, every worker on the file renamed in), or to a broken build,
// this package built with -ldflags "-X
// github.com/cluster2/cluster2/internal/soak.brokenWorkers=1" (its workers
// fail at start: the master must go back and end "failed" with every worker
// on the build it ran before; then a good build is renamed over the path
// again). The first three actions are one exhaustion, one good upgrade and
// one failed upgrade, so that a short soak has each. The driver follows the
// master's images (each prints its own READY line with its own control
// server) and merges what each image's watcher saw of the keys. Two of the
// writers PUT on keep-alive connections (no client
// replays a PUT: a drain that closes a connection under one fails it). PUTs
// refused while the log cannot be written are counted apart (never
// acknowledged); the summary's "lost" counts acknowledged writes missing
// after a final kill -9 and restart. Any failed request (other than one in
// flight on a killed worker), lost or torn value, hang or upgrade that did
// not end as it should fails it. A 4-minute run with upgrades (2026-12-02,
// the 2-vCPU VM at load 19–25) ended "402784 requests, 0 failed, 16 kills, 5
// restarts, 5 upgrades (1 went back), 0 lost". It runs
// CLUSTER2_SOAK_MINUTES minutes (default 10):
//
//	CLUSTER2_SOAK=1 CLUSTER2_SOAK_MINUTES=10 go test -run 'TestSoak$' -v -timeout 0 ./internal/soak
//
// TestSoakRedis is the chaos soak's Redis that dies and comes back (issue
// 17): two clusters share one Redis through the distributed cache "dkv"
// (FailSafeFor 2 s), under load on both, while the driver kill -9s Redis
// every 3 to 8 s and restarts it (append-only file, fsync always) 0.5 to 3 s
// later. It counts failed requests, writes refused and reads that could not
// be served while Redis was down, stale serves (a value older than a write
// acknowledged before the read) and stale serves past the limit (staleBound:
// the PING, its timeout, FailSafeFor and 1 s of slack); a failed request, a
// stale serve past the limit or an acknowledged write missing at the end
// fails it:
//
//	CLUSTER2_SOAK=1 CLUSTER2_SOAK_MINUTES=3 go test -run TestSoakRedis -v -timeout 0 ./internal/soak
//
// Its first runs (2026-12-02, 1 minute, load 29–37 on the 2-vCPU VM) found
// two things: a restarted Redis answers LOADING while it replays its file,
// which the bridge took for an answer rather than for Redis being down (30
// failed writes; fixed: bridge's down), and then "153660 requests, 0 failed,
// 33933 refused writes, 6359 stale serves, 6 past the limit of 3.3 s (worst
// 3.9 s after the write), 6 kills, 0 lost": not fixed (likely cause, not
// proven: the workers read the restarted Redis while the master's tracking
// connection is still on its back-off, so a value loaded then has no
// invalidation until the bridge reconnects).
//
// TestSoakRollingRestarts restarts both workers of the plain test cluster
// (clustertest.Child) back to back for 30 s under 16 loopback clients, on
// keep-alive connections and then on a new connection per request, and
// wants zero failed requests (one replacement every ~20 ms; figures in
// docs/runtime.md):
//
//	CLUSTER2_SOAK=1 go test -run TestSoakRollingRestarts -v ./internal/soak
//
// # Their faults in CI
//
// TestFullDiskComesBack (both cache modes; skipped without the right to
// mount a tmpfs) fills the data directory once and frees it;
// TestKillManagerBetweenWriteAndSync kills the cache manager between a log
// write and its fdatasync three times. Both want every acknowledged write
// back after a restart, and run in every normal `go test ./...`.
// TestUpgradeFaults (skipped with -short: it builds the broken build) runs
// the upgrade faults once: a good upgrade, a failed one, then a kill -9 of a
// worker (respawned on the build gone back to) and a SIGHUP (every worker
// replaced with it). The soak found that respawn failing for ever after the
// way back (the master spawned from /proc/self/fd/<n>, which a child
// resolves after its own descriptors 3, 4, 5 are placed; it now names the
// master's pid).
//
// # Longer runs elsewhere
//
// Some CI tests of other packages run longer under CLUSTER2_SOAK, with the
// same assertions; they stay with what they test:
//
//   - TestRollingRestartsResetNoKeepAlivePUT and TestPausesResetNoKeepAlivePUT
//     (root package): 60 s of keep-alive PUTs through rolling restarts or
//     pauses instead of 10 s and 4 s.
//   - TestGetIntoSurvivesTornHeaders (package cache): 30 s instead of 2 s.
//   - TestNoLostWakeUnderLoad (package ring): CLUSTER2_SOAK_RING_WAKE (a
//     duration) instead of 1 s.
//   - TestIdleCloseRaceRate (package worker, CLUSTER2_SOAK only): measures
//     the rate of HTTP/1.1's idle-close race on the worker's unexported idle
//     tracker, so it stays in the package; it reports a rate and checks
//     nothing that could fail.
package soak
