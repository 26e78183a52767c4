// Package bench holds cluster2's benchmarks: figures, not tests. Run them with
//
//	go test -run '^$' -bench . -benchtime 1s ./bench
//
// Every benchmark runs its peers as sub-benchmarks of the same run, so that
// they share the machine's state (frequency, noise, other load): compare
// figures side by side within one run, never across runs or machines. Read
// them as ratios.
//
// # Rings (ring_bench_test.go)
//
// BenchmarkRingThroughput moves 64-byte messages from a producer goroutine to
// a consumer goroutine (with GOMAXPROCS ≥ 2 they run on two cores) and
// reports msgs/s and allocations per message:
//
//   - ring: a ring.Ring of 64 KiB in an arena; Producer.Write per message,
//     Consumer.Read in batches of up to 256. Both ends spin before sleeping.
//   - chan: a buffered Go channel of [64]byte (capacity 1024), the in-process
//     baseline: the ring should be at least 2× faster.
//   - socketpair: a unix SOCK_STREAM socketpair, one write(2) per message,
//     reads of up to 64 KiB: the kernel baseline for moving messages between
//     processes (measured here between goroutines, which flatters it: no
//     process switch). The ring should be at least 5× faster.
//
// BenchmarkRingPingPong measures a round trip between two processes: the
// test binary re-executes itself as an echo peer that inherits the arena as
// fd 3. ns/op is one round trip (64-byte message there, the same back).
//
//   - spin: both consumers spin on the ring and never sleep.
//   - futex: both consumers sleep on the futex at once (Spin < 0): every
//     message costs a FUTEX_WAKE and a FUTEX_WAIT; this is the idle-cluster
//     latency.
//   - cacheline: the physical floor, two processes spinning on two atomic
//     words in the arena (each on its own 128-byte line) with nothing else.
//     The spinning ring's round trip should be within 2× of it.
//
// On a 2-core machine each spinning process owns a core; anything else that
// runs (the runtime's background work, another process) shows up as noise.
// Run with -count 5 and compare medians when the figures matter.
//
// # HTTP (http_bench_test.go)
//
// BenchmarkHTTPPrefork measures hello-world throughput over loopback
// keep-alive connections (32 concurrent client goroutines sharing up to 64
// connections, in the benchmark process) and reports req/s:
//
//   - net-http-single-process: one child process serving with plain
//     net/http (GOMAXPROCS = all cores).
//   - cluster2-prefork-2-workers: a cluster2 cluster (a master and two
//     workers re-executed from the benchmark binary) on one shared socket,
//     with the worker's request accounting in the path.
//
// The target is prefork ≥ 0.9× the single process on a 2-core machine: the
// isolation must cost nothing noticeable. Client and servers share the cores,
// so the figures swing with any other load on the machine;
// BenchmarkHTTPPreforkInterleaved runs both servers at once and alternates
// the same load between them in 100 ms windows, so that noise falls on both
// alike, and reports the prefork/single ratio directly. BENCH_HTTP_CHILD_ENV
// (e.g. "GOMAXPROCS=2") adds variables to both servers' environment.
//
// # Cache (cache_bench_test.go)
//
// 16-byte keys, 64-byte values. BenchmarkCacheGetHit (1,000 keys, random
// order fixed in advance, one goroutine), BenchmarkCacheGetHit100k (100,000
// keys: most lookups miss the CPU caches), BenchmarkCacheGetHitParallel
// (RunParallel), BenchmarkCacheSet (overwrites over 100,000 keys) and
// BenchmarkCacheGetOrLoadContended (16 keys with a loader while a deleter
// invalidates one every 100 µs). cluster2 reads with GetInto into a reused
// buffer; the peers are otter v2 and fastcache in process, a map behind a
// sync.RWMutex, and Redis and memcached over unix sockets (started by the
// benchmark; skipped, saying how to install them, when absent).
//
// BenchmarkCacheHitsProcesses (procs_bench_test.go) is the prefork
// server's figure: hits per second from 1 and 2 reader processes at once
// over one arena (the benchmark binary re-executed as "cachereader", the
// arena inherited as fd 3), against otter read by 1 and 2 goroutines of one
// process and cluster2 read by goroutines; windows of 200 ms that every
// reader shares; it reports hits/s, hits/s/reader and cpu-ns/hit.
//
// BenchmarkCacheHitRatio (hitratio_bench_test.go) is a figure of the
// eviction policy, not of time: it replays fixed request traces (Zipf 0.9
// and 1.0 with the cache at 0.5% and 5% of 200,000 keys, and Zipf 0.9
// interleaved with one-time scans) into cluster2, otter (W-TinyLFU) and a
// plain LRU holding the same number of entries, and reports "hit%". Run it
// with -benchtime 1x; its doc comment says how the sizes are matched.
// BenchmarkCacheGetHit and BenchmarkCacheSet also report cpu-ns/op, the
// process's CPU time per op: on a machine other jobs load, compare those.
//
// BenchmarkCacheAdd (add_bench_test.go) adds 1 to a counter with
// cache.Cache.Add, serial and parallel, on one counter and over 1,000; its
// peers are Redis INCR over a unix socket and an in-process atomic.Int64
// (the floor: a counter no other process sees).
//
// # Persistence (persist_bench_test.go)
//
// BenchmarkPersistSet: a 64-byte Set into a persistent cache with each
// durability (Always with 4 concurrent writers), a non-persistent cache as
// the baseline, and Redis with appendonly yes and appendfsync everysec /
// always as the peers; it reports sets/s. The log writer runs in the
// benchmark process, so its cost shows in the writers' figures.
// BenchmarkPersistReplay replays a log of 1,000,000 records (100,000 keys)
// into a fresh arena; one op is one whole replay.
//
// # Emitter (emitter_bench_test.go)
//
// BenchmarkEmitterRoundTrip (master→worker→master echo between two real
// processes) and BenchmarkEmitterThroughput (64-byte payloads one way), each
// with a unix-socket JSON echo peer.
//
// # Scaling (scale_bench_test.go, scale_emitter_bench_test.go)
//
// The same subjects over a range: cache hits at 1k, 100k and 1M keys
// against otter; ring throughput at 64 B, 1 KiB and 64 KiB against a
// socketpair; Always with 1, 4 and 16 writers against Redis appendfsync
// always; emitter throughput at 64 B, 1 KiB and (almost) 64 KiB.
//
// # In-place upgrade (upgrade_bench_test.go)
//
// BenchmarkUpgrade deploys new builds of the demo (cmd/cluster2-demo, 2
// workers; built by the benchmark as v1 and v2, each deploy renaming the
// other build over the path it runs from) under wrk's load (2 threads, 32
// keep-alive connections, GET /), both ways in every iteration, on the same
// cluster:
//
//   - upgrade: the monitor's upgrade action; the master execs the new build
//     with its pid, adopts the workers and replaces them.
//   - rolling: SIGHUP, the peer: every worker replaced with the binary on
//     disk.
//
// It reports, per way, the deploy's time (upgrade-ms: the upgrade status's
// Started → Ended; rolling-ms: the rolling-restart → rolling-restart-done
// events), wrk's p99 over the deploy (from 250 ms before to 250 ms after)
// and over the 2 s before it (steady; BENCH_UPGRADE_STEADY), their ratio,
// req/s and failed requests (wrk's errors and non-2xx: 0 expected); the
// round's ratios upgrade/rolling (time) and upgrade/rolling-p99; and, from
// the master's log, the upgrade's steps (upgrade-to-exec-ms: the check and
// the hold; exec-adopt-ms: "executing the new image" → "cluster adopted";
// upgrade-replace-ms: the replacements) and the rolling restart's check
// (rolling-check-ms). Every figure is the median of the iterations
// (-benchtime 4x: four rounds); after each deploy every worker must serve
// the new version. It needs the go command and wrk (apt-get install -y
// wrk) and skips without them. bench/report.sh runs it on its own
// (UPGRADE_ROUNDS rounds per -count run) into
// bench/results/issue15-upgrade.txt.
//
// # Two hosts on one Redis (twohost_bench_test.go)
//
// BenchmarkTwoHosts9010 starts a redis-server (internal/redistest; skipped
// without one) and two clusters (BENCH_TWOHOST_WORKERS workers each, default
// 1) on it, and runs a 90/10 GET/PUT mix of 64-byte values over 10,000 keys
// from 32 keep-alive clients spread over both hosts, three ways served by
// the same workers, alternating in 100 ms windows: c2, the distributed cache
// (Config.Cache.Redis: the arena, then Redis; a PUT writes Redis and drops
// the key on both hosts); redis, a GET or SET through the worker's own
// rueidis client for every request; local, a cache of each host's own (no
// Redis: the ceiling of the HTTP path). It reports c2-req/s, redis-req/s,
// local-req/s, c2/redis and c2/local. bench/report.sh runs it on its own
// (-benchtime 30x, TWOHOST_COUNT runs) into
// bench/results/issue17-twohost.txt.
//
// bench/report.sh runs them all and writes docs/BENCHMARKS.md; what the
// report does not write there (a section or a marked block written by hand)
// is kept in its place.
//
// # Adding benchmarks
//
// Put each subject in its own file (ring_bench_test.go, cache_bench_test.go,
// …). Child processes are registered in the children map of main_test.go,
// from the file that needs them (an init function adding to the map is
// enough).
package bench
