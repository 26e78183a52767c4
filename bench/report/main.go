// Command report turns the raw output of bench/report.sh (Go benchmark lines,
// benchstat-compatible, from `go test -bench -count N` and from the wrk runs)
// into docs/BENCHMARKS.md: the machine, then each figure with its peer from
// the same run, the ratio, and the target its issue names.
//
//	go run ./bench/report -machine machine.txt -out docs/BENCHMARKS.md bench.txt wrk.txt
//
// A figure is the median of its -count runs. What a person wrote is kept
// from the previous file: the blocks between the notes, upgrade notes,
// stale notes, hit-ratio and soak markers, and every section (## title) that
// this command does not write, in its place after the section it followed
// (mergeHand).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results maps a benchmark name (GOMAXPROCS suffix removed) and a unit to
// the values of its runs.
type results map[string]map[string][]float64

var procSuffix = regexp.MustCompile(`-\d+$`)

func parse(path string, r results) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || !strings.HasPrefix(fs[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fs[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(fs[0], "Benchmark"), "")
		for i := 2; i+1 < len(fs); i += 2 {
			v, err := strconv.ParseFloat(fs[i], 64)
			if err != nil {
				continue
			}
			if r[name] == nil {
				r[name] = map[string][]float64{}
			}
			r[name][fs[i+1]] = append(r[name][fs[i+1]], v)
		}
	}
	return sc.Err()
}

func (r results) median(name, unit string) (float64, int, bool) {
	vs := slices.Clone(r[name][unit])
	if len(vs) == 0 {
		return 0, 0, false
	}
	slices.Sort(vs)
	m := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return m, len(vs), true
}

// row is one figure against its peer. Higher is better for rates (unit
// ending in "/s" or a ratio), lower for ns/op. Ratio is always "how many
// times better cluster2 is than the peer" (> 1: cluster2 ahead).
type row struct {
	label      string
	name, unit string
	peer       string // benchmark name of the peer ("" = none)
	peerUnit   string // the peer's unit, when the same benchmark reports both ("" = unit)
	target     string // what the issue asks, in words
	minRatio   float64
	absMax     float64 // the figure must be at most this (0 = none)
	absMin     float64 // the figure must be at least this (0 = none)
}

func higherIsBetter(unit string) bool {
	return strings.HasSuffix(unit, "/s") || strings.Contains(unit, "/s/") || unit == "prefork/single"
}

func fmtVal(v float64, unit string) string {
	switch {
	case unit == "ns/op" && v >= 1e6:
		return fmt.Sprintf("%.3g ms", v/1e6)
	case unit == "ns/op" && v >= 1e4:
		return fmt.Sprintf("%.3g µs", v/1e3)
	case unit == "ns/op" && v >= 100:
		return fmt.Sprintf("%.0f ns", v)
	case unit == "ns/op":
		return fmt.Sprintf("%.3g ns", v)
	case v >= 1e6:
		return fmt.Sprintf("%.3gM %s", v/1e6, unit)
	case v >= 1e4:
		return fmt.Sprintf("%.3gk %s", v/1e3, unit)
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

func (r results) write(w *strings.Builder, rows []row) {
	fmt.Fprintln(w, "| figure | cluster2 | peer | peer's figure | ratio (× better) | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, x := range rows {
		v, n, ok := r.median(x.name, x.unit)
		if !ok {
			fmt.Fprintf(w, "| %s | not measured | | | | %s | – |\n", x.label, x.target)
			continue
		}
		peer, pv, ratio := "", "", ""
		met := true
		judged := false
		if x.peer != "" {
			pu := x.unit
			peer = "`" + x.peer + "`"
			if x.peerUnit != "" {
				pu = x.peerUnit
				peer += " " + pu
			}
			pm, _, pok := r.median(x.peer, pu)
			if !pok {
				pv = "skipped"
			} else {
				pv = fmtVal(pm, pu)
				q := pm / v
				if higherIsBetter(x.unit) {
					q = v / pm
				}
				ratio = fmt.Sprintf("%.2f×", q)
				if x.minRatio > 0 {
					judged = true
					met = met && q >= x.minRatio
				}
			}
		}
		if x.absMax > 0 {
			judged = true
			met = met && v <= x.absMax
		}
		if x.absMin > 0 {
			judged = true
			met = met && v >= x.absMin
		}
		verdict := "–"
		if judged {
			verdict = map[bool]string{true: "yes", false: "**no**"}[met]
		}
		fmt.Fprintf(w, "| %s (`%s`, n=%d) | %s | %s | %s | %s | %s | %s |\n",
			x.label, x.name, n, fmtVal(v, x.unit), peer, pv, ratio, x.target, verdict)
	}
	fmt.Fprintln(w)
}

func main() {
	machine := flag.String("machine", "", "machine description `file`")
	out := flag.String("out", "docs/BENCHMARKS.md", "output `file`")
	note := flag.String("note", "", "a line about the run (duration, count)")
	flag.Parse()
	r := results{}
	for _, p := range flag.Args() {
		if err := parse(p, r); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(1)
		}
	}
	var w strings.Builder
	var old string // the previous file: its hand-written blocks are kept (keep)
	if b, err := os.ReadFile(*out); err == nil {
		old = string(b)
	}
	fmt.Fprintln(&w, "# Benchmarks")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "Written by `bench/report.sh`: the tables are generated (run it again, do not edit them); the notes and\nthe soak blocks, and every section the report does not write, are kept from the previous file and\nwritten by hand. Every figure is the median of")
	fmt.Fprintln(&w, "the runs of one invocation (`-count`), and each peer ran in the same invocation, right after or")
	fmt.Fprintln(&w, "before cluster2's figure; the raw, benchstat-compatible output is in `bench/results/`. **The machine is")
	fmt.Fprintln(&w, "small and shared with other work: absolute figures swing from run to run; read the ratios.**")
	fmt.Fprintln(&w, "Ratio: how many times better cluster2 is than the peer (above 1: cluster2 ahead; for a time, the")
	fmt.Fprintln(&w, "peer's time over cluster2's; for a rate, cluster2's rate over the peer's).")
	fmt.Fprintln(&w)
	if *note != "" {
		fmt.Fprintln(&w, *note)
		fmt.Fprintln(&w)
	}
	if *machine != "" {
		b, err := os.ReadFile(*machine)
		if err == nil {
			fmt.Fprintln(&w, "## Machine")
			fmt.Fprintln(&w)
			fmt.Fprintln(&w, "```")
			fmt.Fprint(&w, string(b))
			fmt.Fprintln(&w, "```")
			fmt.Fprintln(&w)
		}
	}

	fmt.Fprintln(&w, "## Rings (issue 2)")
	fmt.Fprintln(&w)
	rows := []row{
		{label: "ring throughput, 64 B", name: "RingThroughput/ring", unit: "msgs/s", peer: "RingThroughput/socketpair", target: "≥ 5× socketpair", minRatio: 5},
		{label: "ring throughput, 64 B", name: "RingThroughput/ring", unit: "msgs/s", peer: "RingThroughput/chan", target: "≥ 2× chan", minRatio: 2},
		{label: "ring throughput, batches of 16", name: "RingThroughput/ring-batch16", unit: "msgs/s", peer: "RingThroughput/chan", target: "–"},
		{label: "allocations per record", name: "RingThroughput/ring", unit: "allocs/op", target: "0", absMax: 1e-9},
		{label: "round trip, spinning", name: "RingPingPong/spin", unit: "ns/op", peer: "RingPingPong/cacheline", target: "within 2× of the cache line", minRatio: 0.5},
		{label: "round trip, futex", name: "RingPingPong/futex", unit: "ns/op", peer: "RingPingPong/cacheline", target: "–"},
	}
	for _, p := range []string{"64B", "1KiB", "64KiB"} {
		rows = append(rows, row{label: "scaling: ring throughput, " + p, name: "ScaleRingThroughput/payload-" + p + "/ring", unit: "msgs/s",
			peer: "ScaleRingThroughput/payload-" + p + "/socketpair", target: "–"})
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## Shared cache (issue 3)")
	fmt.Fprintln(&w)
	rows = []row{
		{label: "hit, 1k keys", name: "CacheGetHit/cluster2", unit: "ns/op", peer: "CacheGetHit/otter", target: "≤ 2.5× otter and < 50 ns", minRatio: 1 / 2.5, absMax: 50},
		{label: "hit, 1k keys", name: "CacheGetHit/cluster2", unit: "ns/op", peer: "CacheGetHit/fastcache", target: "–"},
		{label: "hit, 1k keys", name: "CacheGetHit/cluster2", unit: "ns/op", peer: "CacheGetHit/rwmutex-map", target: "–"},
		{label: "hit, 1k keys", name: "CacheGetHit/cluster2", unit: "ns/op", peer: "CacheGetHit/redis-unix", target: "≥ 200× Redis GET (unix socket)", minRatio: 200},
		{label: "hit, 1k keys", name: "CacheGetHit/cluster2", unit: "ns/op", peer: "CacheGetHit/memcached-unix", target: "–"},
		{label: "allocations per hit", name: "CacheGetHit/cluster2", unit: "allocs/op", target: "0", absMax: 1e-9},
		{label: "hit, 100k keys", name: "CacheGetHit100k/cluster2", unit: "ns/op", peer: "CacheGetHit100k/otter", target: "< 150 ns", absMax: 150},
		{label: "hit, parallel", name: "CacheGetHitParallel/cluster2", unit: "ns/op", peer: "CacheGetHitParallel/otter", target: "≤ 1.5× otter", minRatio: 1 / 1.5},
		{label: "hit, parallel, CPU time", name: "CacheGetHitParallel/cluster2", unit: "cpu-ns/op", peer: "CacheGetHitParallel/otter", target: "–"},
		{label: "set", name: "CacheSet/cluster2", unit: "ns/op", peer: "CacheSet/otter", target: "< 300 ns", absMax: 300},
		{label: "set", name: "CacheSet/cluster2", unit: "ns/op", peer: "CacheSet/redis-unix", target: "–"},
		{label: "set", name: "CacheSet/cluster2", unit: "ns/op", peer: "CacheSet/memcached-unix", target: "–"},
		{label: "get-or-load, contended", name: "CacheGetOrLoadContended/cluster2", unit: "ns/op", peer: "CacheGetOrLoadContended/otter", target: "≤ 2× otter", minRatio: 0.5},
		{label: "get-or-load, contended, CPU time", name: "CacheGetOrLoadContended/cluster2", unit: "cpu-ns/op", peer: "CacheGetOrLoadContended/otter", target: "–"},
		{label: "get-or-load into a buffer, contended", name: "CacheGetOrLoadContended/cluster2-append", unit: "ns/op", peer: "CacheGetOrLoadContended/otter", target: "≤ 2× otter", minRatio: 0.5},
		{label: "get-or-load into a buffer, contended, CPU time", name: "CacheGetOrLoadContended/cluster2-append", unit: "cpu-ns/op", peer: "CacheGetOrLoadContended/otter", target: "≤ 2× otter", minRatio: 0.5},
		{label: "get-or-load into a buffer, allocations per op", name: "CacheGetOrLoadContended/cluster2-append", unit: "allocs/op", target: "0", absMax: 1e-9},
	}
	for _, k := range []string{"1k", "100k", "1M"} {
		x := row{label: "scaling: hit, " + k + " keys", name: "ScaleCacheGetHit/keys-" + k + "/cluster2", unit: "ns/op",
			peer: "ScaleCacheGetHit/keys-" + k + "/otter", target: "–"}
		if k == "1M" {
			x.target, x.absMax = "< 250 ns", 250
		}
		rows = append(rows, x, row{label: "scaling: hit, " + k + " keys, CPU time", name: x.name, unit: "cpu-ns/op", peer: x.peer, target: "–"})
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## Shared cache: hits from several processes (issue 16)")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "`CacheHitsProcesses` (bench/procs_bench_test.go): hits per second of 1 and 2 reader processes at once over")
	fmt.Fprintln(&w, "one arena (the benchmark binary re-executed, one reading goroutine each), against otter read by 1 and 2")
	fmt.Fprintln(&w, "goroutines of one process (it cannot be shared by processes) and cluster2 read by goroutines; every")
	fmt.Fprintln(&w, "reader reads in the same 200 ms windows. hits/s is all readers together.")
	fmt.Fprintln(&w)
	rows = nil
	for _, k := range []string{"1k", "100k"} {
		for _, n := range []string{"1", "2"} {
			name := "CacheHitsProcesses/keys-" + k + "/readers-" + n + "/"
			label := k + " keys, " + map[string]string{"1": "1 reader process", "2": "2 reader processes"}[n]
			rows = append(rows,
				row{label: label, name: name + "cluster2-processes", unit: "hits/s", peer: name + "otter-goroutines", target: "–"},
				row{label: label, name: name + "cluster2-processes", unit: "hits/s", peer: name + "cluster2-goroutines", target: "–"},
				row{label: label + ", CPU time per hit", name: name + "cluster2-processes", unit: "cpu-ns/hit", peer: name + "otter-goroutines", target: "–"})
		}
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## Shared cache: counters (issue 16)")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "`CacheAdd`: add 1 to a counter (`cache.Cache.Add`), in one goroutine (serial) and from every processor")
	fmt.Fprintln(&w, "(parallel), on one counter (keys-1) or spread over 1,000 (keys-1k); peers: Redis `INCR` over a unix")
	fmt.Fprintln(&w, "socket and an in-process `atomic.Int64` found in a map (the floor: no sharing across processes).")
	fmt.Fprintln(&w)
	rows = nil
	for _, m := range []string{"serial", "parallel"} {
		for _, k := range []string{"1", "1k"} {
			name := "CacheAdd/" + m + "/keys-" + k + "/"
			for _, p := range []string{"redis-unix", "atomic-int64"} {
				rows = append(rows, row{label: "add, " + m + ", keys-" + k, name: name + "cluster2", unit: "ns/op", peer: name + p, target: "–"})
			}
		}
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## Shared cache: stale serving adds nothing to a fresh hit (issue 16)")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "`CacheHitCPU` (bench/stale_bench_test.go): fresh hits on 1,000 keys, one goroutine; cpu-ns/op is the")
	fmt.Fprintln(&w, "benchmark thread's own CPU time per hit (`RUSAGE_THREAD`). The peer of each case is the same call in a")
	fmt.Fprintln(&w, "cache without loader options, in the same run.")
	fmt.Fprintln(&w)
	rows = []row{
		{label: "Get hit, StaleFor set", name: "CacheHitCPU/Get+StaleFor", unit: "cpu-ns/op", peer: "CacheHitCPU/Get", target: "within noise of Get", minRatio: 0.9},
		{label: "Get hit, every loader option", name: "CacheHitCPU/Get+loader-options", unit: "cpu-ns/op", peer: "CacheHitCPU/Get", target: "within noise of Get", minRatio: 0.9},
		{label: "Get hit (a copy the caller owns)", name: "CacheHitCPU/Get", unit: "cpu-ns/op", peer: "CacheHitCPU/GetInto", target: "–"},
	}
	r.write(&w, rows)
	keep(&w, old, staleBegin, staleEnd, "No notes yet.\n")
	fmt.Fprintln(&w)

	fmt.Fprintln(&w, "## Shared cache: hit ratio (issue 16)")
	fmt.Fprintln(&w)
	keep(&w, old, hitRatioBegin, hitRatioEnd,
		"No hit-ratio run recorded yet: `go test -run '^$' -bench CacheHitRatio -benchtime 1x -count 5 ./bench`.\n")
	fmt.Fprintln(&w)

	fmt.Fprintln(&w, "## HTTP: prefork against one process (issue 4)")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "`HTTPPrefork*` are the Go benchmarks (the client in the benchmark process). `Wrk/*` are `wrk` runs")
	fmt.Fprintln(&w, "(2 threads, 32 connections, loopback) of `cmd/cluster2-demo -workers 2` against `bench/report/single`,")
	fmt.Fprintln(&w, "one process with plain net/http serving the demo's handler code; the rounds alternate between the two.")
	fmt.Fprintln(&w)
	rows = []row{
		{label: "hello, Go client", name: "HTTPPrefork/cluster2-prefork-2-workers", unit: "req/s", peer: "HTTPPrefork/net-http-single-process", target: "≥ 0.9× one process", minRatio: 0.9},
		{label: "hello, interleaved windows", name: "HTTPPreforkInterleaved", unit: "prefork/single", target: "≥ 0.9", absMin: 0.9},
		{label: "wrk, hello route", name: "Wrk/hello/cluster2-demo-2-workers", unit: "req/s", peer: "Wrk/hello/net-http-single-process", target: "≥ 0.9× one process", minRatio: 0.9},
		{label: "wrk, cache-hit route", name: "Wrk/cache-hit/cluster2-demo-2-workers", unit: "req/s", peer: "Wrk/cache-hit/net-http-single-process", target: "≥ 0.9× one process", minRatio: 0.9},
		{label: "wrk, hello route, p99 latency", name: "Wrk/hello/cluster2-demo-2-workers", unit: "p99-ms", peer: "Wrk/hello/net-http-single-process", target: "–"},
		{label: "wrk, cache-hit route, p99 latency", name: "Wrk/cache-hit/cluster2-demo-2-workers", unit: "p99-ms", peer: "Wrk/cache-hit/net-http-single-process", target: "–"},
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## Emitter (issue 5)")
	fmt.Fprintln(&w)
	rows = []row{
		{label: "round trip between processes", name: "EmitterRoundTrip/emitter", unit: "ns/op", peer: "EmitterRoundTrip/unix-json", target: "≥ 3× the unix-socket JSON echo", minRatio: 3},
		{label: "throughput, 64 B", name: "EmitterThroughput/emitter", unit: "events/s", peer: "EmitterThroughput/unix-json", target: "≥ 1,000,000 events/s", absMin: 1e6},
	}
	for _, p := range []string{"64B", "1KiB", "64KiB"} {
		rows = append(rows, row{label: "scaling: throughput, " + p, name: "ScaleEmitterThroughput/payload-" + p + "/emitter", unit: "events/s",
			peer: "ScaleEmitterThroughput/payload-" + p + "/unix-json", target: "–"})
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## Persistence (issue 6)")
	fmt.Fprintln(&w)
	rows = []row{
		{label: "EverySecond set", name: "PersistSet/EverySecond", unit: "sets/s", peer: "PersistSet/non-persistent", target: "≤ 2× a non-persistent set", minRatio: 0.5},
		{label: "Never set", name: "PersistSet/Never", unit: "sets/s", peer: "PersistSet/non-persistent", target: "–"},
		{label: "EverySecond set", name: "PersistSet/EverySecond", unit: "sets/s", peer: "PersistSet/redis-appendfsync-everysec-1-writers", target: "–"},
		{label: "Always, 4 writers", name: "PersistSet/Always-4-writers", unit: "sets/s", peer: "PersistSet/redis-appendfsync-always-4-writers", target: "≥ Redis always and ≥ 20,000 sets/s", minRatio: 1, absMin: 20000},
		{label: "replay of 1,000,000 records", name: "PersistReplay", unit: "ns/op", target: "< 2 s", absMax: 2e9},
	}
	for _, n := range []string{"1", "4", "16"} {
		rows = append(rows, row{label: "scaling: Always, writers: " + n, name: "ScalePersistAlways/writers-" + n + "/cluster2-Always", unit: "sets/s",
			peer: "ScalePersistAlways/writers-" + n + "/redis-appendfsync-always", target: "–"})
	}
	r.write(&w, rows)

	fmt.Fprintln(&w, "## In-place upgrade against a rolling restart (issue 15)")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "`BenchmarkUpgrade` (bench/upgrade_bench_test.go; `bench/results/issue15-upgrade.txt`): the demo, 2 workers,")
	fmt.Fprintln(&w, "built as v1 and v2, each deploy renaming the other build over its path, under `wrk -t2 -c32` (GET /,")
	fmt.Fprintln(&w, "loopback); the peer is a SIGHUP rolling restart onto the renamed build, on the same cluster, one of each")
	fmt.Fprintln(&w, "per round. The deploy's time runs from the action to every worker on the new build; p99 over the")
	fmt.Fprintln(&w, "deploy's window against the steady p99 of the 2 s just before it. The rows upgrade/rolling are ratios")
	fmt.Fprintln(&w, "taken in each round (below 1: the upgrade was faster or calmer than that round's rolling restart); the")
	fmt.Fprintln(&w, "ratio column, as above, is how many times better the upgrade did than the rolling restart.")
	fmt.Fprintln(&w)
	up := func(label, unit, peerUnit, target string) row {
		x := row{label: label, name: "Upgrade", unit: unit, peerUnit: peerUnit, target: target}
		if peerUnit != "" {
			x.peer = "Upgrade"
		}
		return x
	}
	rows = []row{
		up("deploy: action to every worker on the new build", "upgrade-ms", "rolling-ms", "–"),
		up("p99 latency during the deploy", "upgrade-p99-ms", "rolling-p99-ms", "–"),
		up("p99 during the deploy / steady p99 before it", "upgrade-p99/steady", "rolling-p99/steady", "–"),
		up("steady p99 before the deploy", "upgrade-steady-p99-ms", "rolling-steady-p99-ms", "–"),
		up("req/s during the deploy", "upgrade-req/s", "rolling-req/s", "–"),
		up("upgrade time / rolling restart time, per round", "upgrade/rolling", "", "–"),
		up("upgrade p99 / rolling restart p99, per round", "upgrade/rolling-p99", "", "–"),
		up("action to the exec (upgrade) / to the check passed (rolling restart)", "upgrade-to-exec-ms", "rolling-check-ms", "–"),
		up("exec to adopted (the master's log)", "exec-adopt-ms", "", "–"),
		up("adopted to every worker replaced (the master's log)", "upgrade-replace-ms", "", "–"),
		{label: "failed requests during an upgrade", name: "Upgrade", unit: "upgrade-failed", target: "0", absMax: 1e-9},
		{label: "failed requests during a rolling restart", name: "Upgrade", unit: "rolling-failed", target: "0", absMax: 1e-9},
	}
	r.write(&w, rows)
	keep(&w, old, upgradeBegin, upgradeEnd, "No notes yet.\n")
	fmt.Fprintln(&w)

	fmt.Fprint(&w, skewIntro)
	rows = nil
	for _, workers := range []string{"2", "4"} {
		for _, l := range []struct{ name, label, unit, target string }{
			{"new-conns-c1", "new connections, 1 client", "accepts-max/fair", "≤ 1.25"},
			{"new-conns-c32", "new connections, 32 clients", "accepts-max/fair", "≤ 1.25"},
			{"keepalive-c32", "keep-alive, 32 connections: connections", "accepts-max/fair", "–"},
			{"keepalive-c32", "keep-alive, 32 connections: requests", "requests-max/fair", "–"},
		} {
			x := row{label: workers + " workers, " + l.label + ", busiest/fair", name: "AcceptSkew/" + l.name + "/" + workers + "-workers",
				unit: l.unit, peerUnit: "kernel-" + l.unit, target: l.target}
			x.peer = x.name
			if l.target != "–" {
				x.absMax = 1.25
			}
			rows = append(rows, x)
		}
		for _, l := range []string{"new-conns-c1", "new-conns-c32", "keepalive-c32"} {
			name := "AcceptSkew/" + l + "/" + workers + "-workers"
			rows = append(rows, row{label: workers + " workers, " + l + ": wrk's rate", name: name, unit: "req/s", peer: name, peerUnit: "kernel-req/s", target: "–"})
		}
	}
	r.write(&w, rows)
	keep(&w, old, skewBegin, skewEnd, "No notes yet.\n")
	fmt.Fprintln(&w)

	fmt.Fprint(&w, twoHostIntro)
	rows = []row{
		{label: "90/10 mix, two hosts: distributed cache against Redis directly", name: "TwoHosts9010", unit: "c2-req/s",
			peer: "TwoHosts9010", peerUnit: "redis-req/s", target: "–"},
		{label: "90/10 mix, two hosts: distributed cache against each host's own cache", name: "TwoHosts9010", unit: "c2-req/s",
			peer: "TwoHosts9010", peerUnit: "local-req/s", target: "–"},
	}
	r.write(&w, rows)
	keep(&w, old, twoHostBegin, twoHostEnd, "No notes yet.\n")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "## Reading these figures")
	fmt.Fprintln(&w)
	keep(&w, old, notesBegin, notesEnd, "No notes yet.\n")
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "## Chaos soak (issue 8)")
	fmt.Fprintln(&w)
	keep(&w, old, soakBegin, soakEnd,
		"No soak run recorded yet: `CLUSTER2_SOAK=1 go test -run 'TestSoak$' -v -timeout 0 ./internal/soak`.\n")
	if err := os.WriteFile(*out, []byte(mergeHand(w.String(), old)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// sections splits a markdown file at its "## " titles: the text before the
// first, then each section (title line included), with its title.
func sections(doc string) (head string, titles, bodies []string) {
	lines := strings.SplitAfter(doc, "\n")
	cur := &head
	for _, l := range lines {
		if strings.HasPrefix(l, "## ") {
			titles = append(titles, strings.TrimSpace(l))
			bodies = append(bodies, "")
			cur = &bodies[len(bodies)-1]
		}
		*cur += l
	}
	return head, titles, bodies
}

// mergeHand returns the generated file gen with every section of the
// previous file old whose title gen does not have (a section written by
// hand) put back after the section it followed in old (the nearest one
// before it that gen has; at the end of gen's sections if none does).
func mergeHand(gen, old string) string {
	head, titles, bodies := sections(gen)
	_, otitles, obodies := sections(old)
	after := map[string][]string{} // a generated title → the hand-written sections that follow it
	var orphans []string
	anchor := ""
	for i, t := range otitles {
		if slices.Contains(titles, t) {
			anchor = t
			continue
		}
		body := obodies[i]
		if !strings.HasSuffix(body, "\n\n") {
			body += "\n"
		}
		if anchor == "" {
			orphans = append(orphans, body)
		} else {
			after[anchor] = append(after[anchor], body)
		}
	}
	var w strings.Builder
	w.WriteString(head)
	for i, t := range titles {
		body := bodies[i]
		if len(after[t]) > 0 && !strings.HasSuffix(body, "\n\n") {
			body += "\n"
		}
		w.WriteString(body)
		for _, h := range after[t] {
			w.WriteString(h)
		}
	}
	for _, h := range orphans {
		w.WriteString(h)
	}
	return strings.TrimRight(w.String(), "\n") + "\n"
}

// keep writes the block between begin and end of the previous file (or def):
// the hand-written and soak parts survive a new run.
func keep(w *strings.Builder, old, begin, end, def string) {
	body := def
	if i, j := strings.Index(old, begin), strings.Index(old, end); i >= 0 && j > i {
		body = strings.TrimPrefix(old[i+len(begin):j], "\n")
	}
	fmt.Fprintln(w, begin)
	fmt.Fprint(w, body)
	fmt.Fprintln(w, end)
}

const (
	notesBegin = "<!-- notes: kept by bench/report, written by hand after a run -->"
	notesEnd   = "<!-- /notes -->"
	soakBegin  = "<!-- soak: kept by bench/report, written from internal/soak's summary -->"
	soakEnd    = "<!-- /soak -->"
	// The upgrade section's notes: the ratios quoted, the load.
	upgradeBegin = "<!-- upgrade notes: kept by bench/report, written by hand after a run -->"
	upgradeEnd   = "<!-- /upgrade notes -->"
	// The accept balance's section: its text, then its notes (the load, what
	// the figures say).
	skewIntro = "## Balanced accepts (issue 18)\n\n" +
		"`BenchmarkAcceptSkew` (bench/accept_skew_bench_test.go; `bench/results/issue18-accept-skew.txt`): wrk against\n" +
		"a cluster of 2 or 4 workers serving hello world, with a new connection per request (`-H \"Connection: close\"`,\n" +
		"1 and 32 connections) and with 32 keep-alive connections, 3 s per run. The figure is the busiest worker's\n" +
		"share of the connections it accepted (of the requests, for keep-alive) over the fair share, from the\n" +
		"workers' own counts in /metrics: 1 is even. cluster2 balances its accepts (docs/runtime.md, \"Balanced\n" +
		"accepts\"); the peer is the same cluster with the balance off (`ServerConfig.UnbalancedAccepts`: the kernel's\n" +
		"order, what cluster2 did before), running beside it and loaded in turn in every round.\n\n"
	skewBegin = "<!-- accept skew notes: kept by bench/report, written by hand after a run -->"
	skewEnd   = "<!-- /accept skew notes -->"
	// The two-host section (issue 17): its text, then its notes.
	twoHostIntro = "## Two hosts on one Redis: a 90/10 mix (issue 17)\n\n" +
		"`BenchmarkTwoHosts9010` (bench/twohost_bench_test.go; `bench/results/issue17-twohost.txt`): two clusters (one\n" +
		"worker each) sharing one Redis, the benchmark's 32 keep-alive clients spread over both, 90% GET and 10% PUT\n" +
		"of 64-byte values over 10,000 keys, uniformly at random, every key written and read once before. cluster2\n" +
		"reads and writes a distributed cache (`Config.Cache.Redis`: the arena, then Redis; a PUT writes Redis and\n" +
		"drops the key on both hosts); the peer is the same workers doing a GET or SET through their own rueidis\n" +
		"client for every request; the second peer, a cache of each host's own (no Redis, writes not shared), is\n" +
		"the ceiling of this HTTP path. The three alternate in 100 ms windows in every iteration.\n\n"
	twoHostBegin = "<!-- two-host notes: kept by bench/report, written by hand after a run -->"
	twoHostEnd   = "<!-- /two-host notes -->"
	// The hit-ratio section (BenchmarkCacheHitRatio's hit% per peer; the
	// table is written by hand from bench/results/issue16-hitratio-*.txt).
	hitRatioBegin = "<!-- hit ratio: kept by bench/report, written by hand after a run -->"
	hitRatioEnd   = "<!-- /hit ratio -->"
	// The stale-serving section's notes (builds compared, the load).
	staleBegin = "<!-- stale notes: kept by bench/report, written by hand after a run -->"
	staleEnd   = "<!-- /stale notes -->"
)
