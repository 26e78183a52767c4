#!/usr/bin/env bash
# bench/report.sh: one command for every benchmark figure (issue 8).
#
# Installs the peers that come from Debian's packages if missing (redis-server,
# memcached, wrk), records the machine, runs every Go benchmark of ./bench with
# its peers (-count runs, benchstat-compatible), runs wrk against the demo
# (cmd/cluster2-demo, 2 workers) and against one net/http process serving the
# same handler (bench/report/single), runs BenchmarkUpgrade (the in-place
# upgrade against a SIGHUP rolling restart under wrk, issue 15) and
# BenchmarkAcceptSkew (how evenly the workers share connections under wrk,
# with the accept balance and without, issue 18) and BenchmarkTwoHosts9010 (a
# 90/10 mix across two clusters on one Redis, issue 17) on their own, saves the raw
# output in bench/results/, and writes docs/BENCHMARKS.md (bench/report:
# medians, peers, ratios, targets).
#
# Knobs (environment): COUNT (default 5), BENCHTIME (default 1s), BENCH (the
# -bench pattern, default .), WRK_DURATION (default 5s), WRK_ROUNDS (default
# COUNT), PORT_BASE (default 18080: uses PORT_BASE..PORT_BASE+2 on 127.0.0.1),
# UPGRADE_ROUNDS (deploys of each kind per -count run, default 2; 0: none),
# SKEW_COUNT (runs of BenchmarkAcceptSkew, default COUNT; 0: none; about
# 80 s each), TWOHOST_COUNT (runs of BenchmarkTwoHosts9010, default COUNT;
# 0: none; about 20 s each). A full run takes about 20 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

COUNT="${COUNT:-5}"
BENCHTIME="${BENCHTIME:-1s}"
BENCH="${BENCH:-.}"
WRK_DURATION="${WRK_DURATION:-5s}"
WRK_ROUNDS="${WRK_ROUNDS:-$COUNT}"
PORT_BASE="${PORT_BASE:-18080}"
UPGRADE_ROUNDS="${UPGRADE_ROUNDS:-2}"
SKEW_COUNT="${SKEW_COUNT:-$COUNT}"
TWOHOST_COUNT="${TWOHOST_COUNT:-$COUNT}"
OUT=bench/results
mkdir -p "$OUT"

echo "== peers (Debian packages)"
missing=()
for p in redis-server:redis-server memcached:memcached wrk:wrk; do
  command -v "${p%%:*}" >/dev/null 2>&1 || missing+=("${p##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
# Only the binaries are needed: the benchmarks start their own servers.
for s in redis-server memcached; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$s" 2>/dev/null; then
    echo "note: a system $s is running; the benchmarks use their own on unix sockets"
  fi
done

echo "== machine"
{
  echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cores:    $(nproc) (online: $(getconf _NPROCESSORS_ONLN))"
  echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel:   $(uname -sr)"
  echo "go:       $(go version)"
  echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, at start)"
  echo "peers:    $(redis-server --version | cut -d' ' -f1-3); memcached $(memcached -V | cut -d' ' -f2); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "settings: -count $COUNT -benchtime $BENCHTIME; wrk -t2 -c32 -d$WRK_DURATION × $WRK_ROUNDS rounds"
} | tee "$OUT/machine.txt"

start=$(date +%s)
echo "== go benchmarks (-count $COUNT -benchtime $BENCHTIME)"
# BenchmarkUpgrade, BenchmarkAcceptSkew and BenchmarkTwoHosts9010 run on
# their own below (their iterations are deploys, wrk rounds and load windows,
# not -benchtime).
go test -run '^$' -bench "$BENCH" -skip '^Benchmark(Upgrade|AcceptSkew|TwoHosts9010)$' -benchtime "$BENCHTIME" -count "$COUNT" -timeout 60m ./bench | tee "$OUT/bench.txt"

echo "== wrk: the demo (2 workers) against one net/http process"
tmp=$(mktemp -d)
demo_pid="" single_pid=""
cleanup() {
  [ -n "$single_pid" ] && kill "$single_pid" 2>/dev/null || true
  if [ -n "$demo_pid" ]; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/cluster2-demo" ./cmd/cluster2-demo
go build -o "$tmp/single" ./bench/report/single
demo_addr=127.0.0.1:$PORT_BASE single_addr=127.0.0.1:$((PORT_BASE + 2))
"$tmp/cluster2-demo" -addr "$demo_addr" -monitor "127.0.0.1:$((PORT_BASE + 1))" -workers 2 -rundir "$tmp/run" >"$tmp/demo.log" 2>&1 &
demo_pid=$!
GOMAXPROCS=$(nproc) "$tmp/single" -addr "$single_addr" >"$tmp/single.log" 2>&1 &
single_pid=$!
for a in "$demo_addr" "$single_addr"; do
  for i in $(seq 100); do
    curl -fsS "http://$a/" >/dev/null 2>&1 && break
    [ "$i" = 100 ] && { echo "$a does not answer"; cat "$tmp"/*.log; exit 1; }
    sleep 0.1
  done
  curl -fsS "http://$a/cache/hit" >/dev/null # loads the key: the route then hits
done
# wrkline NAME URL: one wrk run as a Go benchmark line (iterations = requests;
# ns/op = 1e9 / req/s), so that benchstat and bench/report read it.
wrkline() {
  local out
  out=$(wrk -t2 -c32 -d"$WRK_DURATION" --latency "$2")
  echo "$out" >>"$OUT/wrk-raw.txt"
  echo "$out" | awk -v name="$1" '
    / requests in / { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /^ +99%/ { p99 = $2 }
    /Non-2xx|Socket errors/ { bad = bad " " $0 }
    END {
      if (rps == 0) { print "wrk gave no rate for " name > "/dev/stderr"; exit 1 }
      if (p99 ~ /us$/) { sub(/us$/, "", p99); p99 /= 1000 } else if (p99 ~ /ms$/) { sub(/ms$/, "", p99) } else if (p99 ~ /s$/) { sub(/s$/, "", p99); p99 *= 1000 }
      printf "BenchmarkWrk/%s-2 %d %.1f ns/op %.0f req/s %.3f p99-ms\n", name, n, 1e9 / rps, rps, p99
      if (bad != "") print "wrk " name ":" bad > "/dev/stderr"
    }'
}
: >"$OUT/wrk-raw.txt"
{
  echo "goos: linux"
  echo "goarch: amd64"
  echo "pkg: github.com/cluster2/cluster2/bench/wrk"
  for r in $(seq "$WRK_ROUNDS"); do
    for route in hello:/ cache-hit:/cache/hit; do
      name=${route%%:*} path=${route#*:}
      wrkline "$name/cluster2-demo-2-workers" "http://$demo_addr$path"
      wrkline "$name/net-http-single-process" "http://$single_addr$path"
    done
  done
} | tee "$OUT/wrk.txt"
cleanup
demo_pid="" single_pid=""
trap - EXIT

upgrade_results=()
if [ "$UPGRADE_ROUNDS" -gt 0 ]; then
  echo "== in-place upgrade against a SIGHUP rolling restart (issue 15): $UPGRADE_ROUNDS deploys of each × $COUNT"
  go test -run '^$' -bench '^BenchmarkUpgrade$' -benchtime "${UPGRADE_ROUNDS}x" -count "$COUNT" -timeout 30m ./bench | tee "$OUT/issue15-upgrade.txt"
  upgrade_results=("$OUT/issue15-upgrade.txt")
fi

skew_results=()
if [ "$SKEW_COUNT" -gt 0 ]; then
  echo "== accept skew under wrk, with and without the accept balance (issue 18): $SKEW_COUNT runs"
  go test -run '^$' -bench '^BenchmarkAcceptSkew$' -benchtime 1x -count "$SKEW_COUNT" -timeout 30m ./bench | tee "$OUT/issue18-accept-skew.txt"
  skew_results=("$OUT/issue18-accept-skew.txt")
fi

twohost_results=()
if [ "$TWOHOST_COUNT" -gt 0 ]; then
  echo "== a 90/10 mix across two hosts on one Redis (issue 17): $TWOHOST_COUNT runs"
  go test -run '^$' -bench '^BenchmarkTwoHosts9010$' -benchtime 30x -count "$TWOHOST_COUNT" -timeout 30m ./bench | tee "$OUT/issue17-twohost.txt"
  twohost_results=("$OUT/issue17-twohost.txt")
fi

elapsed=$(( $(date +%s) - start ))
echo "== docs/BENCHMARKS.md"
go run ./bench/report -machine "$OUT/machine.txt" -out docs/BENCHMARKS.md \
  -note "Run of $(date -u +%Y-%m-%d): $((elapsed / 60)) min $((elapsed % 60)) s for the benchmarks and wrk (\`bench/report.sh\`, COUNT=$COUNT BENCHTIME=$BENCHTIME)." \
  "$OUT/bench.txt" "$OUT/wrk.txt" "${upgrade_results[@]}" "${skew_results[@]}" "${twohost_results[@]}"
echo "wrote docs/BENCHMARKS.md; raw output in $OUT/ (benchstat $OUT/bench.txt)"
