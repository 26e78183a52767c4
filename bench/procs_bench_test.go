package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

func init() { children["cachereader"] = childCacheReader }

// envReaderKeys tells a reader process how many keys the cache holds,
// envReaderFrom the position in them it starts reading at.
const (
	envReaderKeys = "BENCH_READER_KEYS"
	envReaderFrom = "BENCH_READER_FROM"
)

// readWindow is one measuring window of BenchmarkCacheHitsProcesses: every
// reader reads from start to end (unix nanoseconds), so that the readers'
// windows coincide whichever process or goroutine they run in.
const readWindow = 200 * time.Millisecond

// BenchmarkCacheHitsProcesses is the figure that matters for a prefork
// server: hits per second from 1 and 2 reader PROCESSES at once over one
// arena (the benchmark binary re-executed, the arena inherited as fd 3, one
// reading goroutine each), against otter read by 1 and 2 goroutines of one
// process (an in-process cache cannot be shared by processes at all), and
// cluster2 read by goroutines of one process (processes and goroutines
// should not differ: a hit writes no shared line). 16-byte keys, 64-byte
// values, 1,000 and 100,000 keys, each reader from its own offset in the
// same order. Each iteration is one window of readWindow in which every
// reader reads as fast as it can; it reports hits/s (all readers),
// hits/s/reader, ns/op as the wall time per hit of all readers together (as
// RunParallel's ns/op) and cpu-ns/hit (the readers' own threads' CPU time
// per hit: a loaded host inflates it much less than the wall clock).
func BenchmarkCacheHitsProcesses(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		keys := benchKeys(n)
		for _, readers := range []int{1, 2} {
			prefix := fmt.Sprintf("keys-%s/readers-%d/", sizeName(n), readers)
			b.Run(prefix+"cluster2-processes", func(b *testing.B) { hitsProcesses(b, keys, readers) })
			b.Run(prefix+"cluster2-goroutines", func(b *testing.B) {
				s := filled(b, peer{"cluster2", openCluster2}, keys)
				defer s.close()
				hitsGoroutines(b, s, keys, readers)
			})
			b.Run(prefix+"otter-goroutines", func(b *testing.B) {
				s := filled(b, peer{"otter", openOtter}, keys)
				defer s.close()
				hitsGoroutines(b, s, keys, readers)
			})
		}
	}
}

// windowResult is one reader's count over one window.
type windowResult struct {
	hits, cpu int64 // cpu: the reading thread's CPU time, ns
}

// readFor reads keys from s from position i on during [start, end) (unix
// nanoseconds), checking the clock every 256 hits, on a locked thread.
func readFor(s store, keys []string, i int, start, end int64) windowResult {
	buf := make([]byte, 0, bufferSpacing)
	for time.Now().UnixNano() < start {
	}
	cpu0 := threadCPU()
	var hits int64
	for {
		for range 256 {
			var ok bool
			if buf, ok = s.get(buf[:0], keys[i]); !ok {
				return windowResult{-1, 0}
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
		hits += 256
		if time.Now().UnixNano() >= end {
			return windowResult{hits, threadCPU() - cpu0}
		}
	}
}

// reportWindows reports what BenchmarkCacheHitsProcesses reports over
// windows windows of readers readers.
func reportWindows(b *testing.B, readers, windows int, total windowResult) {
	secs := (time.Duration(windows) * readWindow).Seconds()
	rate := float64(total.hits) / secs
	b.ReportMetric(rate, "hits/s")
	b.ReportMetric(rate/float64(readers), "hits/s/reader")
	b.ReportMetric(1e9/rate, "ns/op")
	b.ReportMetric(float64(total.cpu)/float64(total.hits), "cpu-ns/hit")
}

// hitsGoroutines runs readers goroutines of this process over filled s.
func hitsGoroutines(b *testing.B, s store, keys []string, readers int) {
	var total windowResult
	windows := 0
	for b.Loop() {
		start := time.Now().Add(time.Millisecond).UnixNano()
		end := start + int64(readWindow)
		res := make([]windowResult, readers)
		var wg sync.WaitGroup
		for r := range readers {
			wg.Go(func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				res[r] = readFor(s, keys, r*len(keys)/readers, start, end)
			})
		}
		wg.Wait()
		for _, w := range res {
			if w.hits < 0 {
				b.Fatal("a reader missed")
			}
			total.hits += w.hits
			total.cpu += w.cpu
		}
		windows++
	}
	reportWindows(b, readers, windows, total)
}

// reader is a reader process and the pipes the benchmark drives it by.
type reader struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// hitsProcesses fills a cluster2 cache with keys and runs readers reader
// processes over its arena.
func hitsProcesses(b *testing.B, keys []string, readers int) {
	s := filled(b, peer{"cluster2", openCluster2}, keys).(*c2store)
	defer s.close()
	rs := make([]reader, readers)
	for r := range rs {
		cmd := xtesting.Command(b, "cachereader", []*os.File{s.a.File()},
			envReaderKeys+"="+strconv.Itoa(len(keys)), envReaderFrom+"="+strconv.Itoa(r*len(keys)/readers))
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		xtesting.Start(b, cmd)
		rs[r] = reader{cmd, in, bufio.NewScanner(out)}
		if !rs[r].out.Scan() || rs[r].out.Text() != "ready" {
			b.Fatalf("reader %d did not start: %q", r, rs[r].out.Text())
		}
	}
	defer func() {
		for _, r := range rs {
			r.in.Close()
			r.cmd.Wait()
		}
	}()
	var total windowResult
	windows := 0
	for b.Loop() {
		start := time.Now().Add(2 * time.Millisecond).UnixNano()
		for _, r := range rs {
			fmt.Fprintf(r.in, "%d %d\n", start, start+int64(readWindow))
		}
		for i, r := range rs {
			var w windowResult
			if !r.out.Scan() {
				b.Fatalf("reader %d: no result", i)
			}
			if _, err := fmt.Sscanf(r.out.Text(), "%d %d", &w.hits, &w.cpu); err != nil || w.hits < 0 {
				b.Fatalf("reader %d: %q (%v)", i, r.out.Text(), err)
			}
			total.hits += w.hits
			total.cpu += w.cpu
		}
		windows++
	}
	reportWindows(b, readers, windows, total)
}

// childCacheReader is a reader process of BenchmarkCacheHitsProcesses: it
// attaches the inherited arena's cache space, says "ready", then for every
// line "start end" on stdin reads during that window and prints "hits cpu-ns"
// (hits -1: a key missed). It exits at EOF.
func childCacheReader() {
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "reader: open:", err)
		os.Exit(2)
	}
	sp, err := cache.Attach(a)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reader: attach:", err)
		os.Exit(2)
	}
	c, err := sp.Use("bench", cache.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reader: use:", err)
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Getenv(envReaderKeys))
	from, _ := strconv.Atoi(os.Getenv(envReaderFrom))
	keys := benchKeys(n)
	s := &c2store{a, sp, c}
	runtime.LockOSThread()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var start, end int64
		if _, err := fmt.Sscanf(in.Text(), "%d %d", &start, &end); err != nil {
			fmt.Fprintln(os.Stderr, "reader: bad command:", in.Text())
			os.Exit(2)
		}
		w := readFor(s, keys, from, start, end)
		fmt.Println(w.hits, w.cpu)
	}
	sp.Close()
	a.Close()
}
