package cache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){
		"model":     childModel,
		"crash":     childCrash,
		"loadonce":  childLoadOnce,
		"mutator":   childMutator,
		"loadevict": childLoadEvict,
		"loadopts":  childLoadOpts,
		"adder":     childAdder,
		"scan":      childScan,
		"walker":    childWalker,
	})
}

// newArenaSpace makes an arena with a cache space for multi-process tests.
func newArenaSpace(t *testing.T, bytes int64) (*shm.Arena, *cache.Space) {
	t.Helper()
	a, err := shm.Create(shm.Options{Size: bytes + bytes/4 + 1<<20})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: bytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); a.Close() })
	return a, sp
}

// childSpace attaches the inherited arena (fd 3) in a child.
func childSpace() (*shm.Arena, *cache.Space) {
	a, err := shm.Open(os.NewFile(3, "arena"))
	if err != nil {
		fail(2, "open: %v", err)
	}
	sp, err := cache.Attach(a)
	if err != nil {
		fail(2, "attach: %v", err)
	}
	return a, sp
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "child %d: "+format+"\n", append([]any{os.Getpid()}, args...)...)
	os.Exit(code)
}

// ---- differential model test ----

// childModel runs a random sequence of Get/Set/Del (some with a short time to
// live) on its own keys, checking every read against its model, and reads
// the other children's keys to check that nothing torn is ever returned. It
// prints its final model as JSON.
func childModel() {
	_, sp := childSpace()
	c, err := sp.Use("model", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	id, _ := strconv.Atoi(os.Getenv("MODEL_ID"))
	seed, _ := strconv.ParseUint(os.Getenv("MODEL_SEED"), 10, 64)
	ops, _ := strconv.Atoi(os.Getenv("MODEL_OPS"))
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	// An entry with a time to live got its deadline somewhere in [Lo, Hi]:
	// the Set's start and end plus the TTL. An operation that ran in [t0, t1]
	// saw it alive for sure if Lo > t1, expired for sure if Hi <= t0, and
	// either way in between (a loaded machine can stretch a call by more
	// than any fixed slack).
	type entry struct {
		Val    string
		Lo, Hi int64 // unix nanoseconds; 0 = no deadline
	}
	model := map[string]entry{}
	const slack = int64(time.Millisecond) // clock reads around the cache's own
	// state returns whether e was alive during [t0, t1] and whether that is sure.
	state := func(e entry, had bool, t0, t1 int64) (alive, sure bool) {
		switch {
		case !had:
			return false, true
		case e.Hi == 0 || e.Lo > t1+slack:
			return true, true
		case e.Hi+slack <= t0:
			return false, true
		}
		return false, false
	}
	ctx := context.Background()
	for range ops {
		k := fmt.Sprintf("p%d-k%d", id, rng.IntN(200))
		t0 := time.Now().UnixNano()
		switch op := rng.IntN(10); {
		case op < 4: // Set, a quarter of them with a short TTL
			v := fmt.Sprintf("%s=%d", k, rng.Uint64())
			opts := cache.SetOptions{LeaveIfNotNull: rng.IntN(8) == 0}
			if rng.IntN(4) == 0 {
				opts.Expire = time.Duration(20+rng.IntN(60)) * time.Millisecond
			}
			e, had := model[k]
			ok, err := c.Set(ctx, k, []byte(v), opts)
			t1 := time.Now().UnixNano()
			if err != nil {
				fail(3, "set: %v", err)
			}
			if present, sure := state(e, had, t0, t1); opts.LeaveIfNotNull && sure && ok == present {
				fail(4, "LeaveIfNotNull set of %q stored=%v with model present=%v", k, ok, present)
			}
			if ok {
				e := entry{Val: v}
				if opts.Expire > 0 {
					e.Lo, e.Hi = t0+int64(opts.Expire), t1+int64(opts.Expire)
				}
				model[k] = e
			}
		case op < 5:
			old, ok, err := c.Del(ctx, k)
			t1 := time.Now().UnixNano()
			if err != nil {
				fail(3, "del: %v", err)
			}
			e, had := model[k]
			if alive, sure := state(e, had, t0, t1); sure && alive && (!ok || string(old) != e.Val) {
				fail(4, "Del(%q) = %q, %v; model %q", k, old, ok, e.Val)
			}
			if !had && ok {
				fail(4, "Del(%q) found %q; model has nothing", k, old)
			}
			delete(model, k)
		case op < 9:
			v, ok, err := c.GetInto(nil, k)
			t1 := time.Now().UnixNano()
			if err != nil {
				fail(3, "get: %v", err)
			}
			e, had := model[k]
			alive, sure := state(e, had, t0, t1)
			switch {
			case !sure:
				// at the deadline: either answer is right
			case alive:
				if !ok || string(v) != e.Val {
					fail(4, "Get(%q) = %q, %v; model %q", k, v, ok, e.Val)
				}
			default:
				if ok {
					fail(4, "Get(%q) = %q; model has nothing (or expired)", k, v)
				}
			}
		default: // read a neighbour's key: any value must be whole
			other := fmt.Sprintf("p%d-k%d", rng.IntN(4), rng.IntN(200))
			if v, ok, _ := c.GetInto(nil, other); ok && !validModelValue(other, v) {
				fail(4, "torn read of %q: %q", other, v)
			}
		}
	}
	// Report the model: entries with a deadline may be gone when the parent looks.
	out := map[string]string{}
	for k, e := range model {
		if e.Hi == 0 {
			out[k] = e.Val
		} else {
			out[k] = "~" + e.Val
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func validModelValue(key string, v []byte) bool {
	s := string(v)
	if len(s) <= len(key)+1 || s[:len(key)] != key || s[len(key)] != '=' {
		return false
	}
	_, err := strconv.ParseUint(s[len(key)+1:], 10, 64)
	return err == nil
}

// TestModelAcrossProcesses: four processes run random operations at once,
// each checking every answer against its own model; then the parent checks
// the union of the models against the cache and Verify.
func TestModelAcrossProcesses(t *testing.T) {
	a, sp := newArenaSpace(t, 16<<20)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ops := 100000
	if testing.Short() {
		ops = 10000
	}
	var cmds []*exec.Cmd
	var outs []*os.File
	for id := range 4 {
		cmd := xtesting.Command(t, "model", []*os.File{a.File()},
			"MODEL_ID="+strconv.Itoa(id), "MODEL_SEED="+strconv.FormatUint(seed, 10), "MODEL_OPS="+strconv.Itoa(ops))
		f, err := os.CreateTemp(t.TempDir(), "model")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout = f
		xtesting.Start(t, cmd)
		cmds, outs = append(cmds, cmd), append(outs, f)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v (3 = an operation failed, 4 = the cache disagreed with the model)", i, err)
		}
	}
	c, err := sp.Use("model", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, f := range outs {
		f.Seek(0, 0)
		var m map[string]string
		if err := json.NewDecoder(f).Decode(&m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			want[k] = v
		}
	}
	for k, v := range want {
		got, ok, _ := c.GetInto(nil, k)
		if v[0] == '~' {
			if ok && string(got) != v[1:] {
				t.Errorf("%q = %q; want %q or expired", k, got, v[1:])
			}
			continue
		}
		if !ok || string(got) != v {
			t.Errorf("%q = %q, %v; want %q", k, got, ok, v)
		}
	}
	keys, _ := c.Keys(context.Background())
	for _, k := range keys {
		if _, ok := want[k]; !ok {
			if v, ok, _ := c.GetInto(nil, k); ok {
				t.Errorf("cache holds %q = %q that no model has", k, v)
			}
		}
	}
	if err := sp.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Evictions != 0 {
		t.Fatalf("the model test evicted %d entries: make the space larger", st.Evictions)
	}
	t.Logf("%d keys checked; %+v", len(want), c.Stats())
}

// ---- crash test ----

// checksummed values: 8-byte crc32 of the rest, then a random payload.
func checksummed(rng *rand.Rand) []byte {
	v := make([]byte, 8+16+rng.IntN(200))
	for i := 8; i < len(v); i++ {
		v[i] = byte(rng.Uint32())
	}
	binary.LittleEndian.PutUint64(v, uint64(crc32.ChecksumIEEE(v[8:])))
	return v
}

func checksumOK(v []byte) bool {
	return len(v) >= 8 && binary.LittleEndian.Uint64(v) == uint64(crc32.ChecksumIEEE(v[8:]))
}

// childCrash sets (some tagged), deletes, swaps (CompareAndSwap, SetIfAbsent)
// and reads checksummed values (some through a loader), adds to counters,
// invalidates tags and now and then clears the cache, until it is killed. Status 3: an operation waited more than 2 s
// crashOpts are the crash test's cache options: with short-lived sets
// (one in sixteen) and a loader that sometimes fails or finds nothing,
// children are killed while serving stale values, refreshing them in the
// background, loading beside a kept value (fail-safe) and storing negative
// records, as well as in every other write path.
var crashOpts = cache.Options{StaleFor: 100 * time.Millisecond, FailSafeFor: 300 * time.Millisecond, NotFoundExpire: 30 * time.Millisecond}

var errBackend = errors.New("backend down")

// (a hang); 4: a read returned a value whose checksum fails.
func childCrash() {
	_, sp := childSpace()
	c, err := sp.Use("crash", crashOpts)
	if err != nil {
		fail(2, "use: %v", err)
	}
	progress := shmCounter(sp)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	// Once at the start, for sure: a stale serve (and its refresh) and a
	// negative hit, on keys of this process's own. The other children's
	// writes may evict them first (the cache is too small on purpose): try
	// until each happened (a stale serve returns the old value, and its
	// refresh stores the loader's; a negative hit runs no loader).
	{
		ctx := context.Background()
		mine := "own" + strconv.Itoa(os.Getpid())
		refreshed := func(val []byte) bool {
			for range 20 {
				if v, ok, _ := c.GetInto(nil, mine); ok && bytes.Equal(v, val) {
					return true
				}
				time.Sleep(time.Millisecond)
			}
			return false
		}
		for range 100 {
			old := checksummed(rng)
			c.Set(ctx, mine, old, cache.SetOptions{Expire: time.Millisecond})
			time.Sleep(2 * time.Millisecond)
			val := checksummed(rng)
			if v, _ := c.Get(ctx, mine, func(context.Context, string) ([]byte, error) { return val, nil }); bytes.Equal(v, old) && refreshed(val) {
				break
			}
		}
		for range 100 {
			ran := 0
			for range 2 {
				c.Get(ctx, mine+"-none", func(context.Context, string) ([]byte, error) { ran++; return nil, cache.ErrNotFound })
			}
			if ran < 2 {
				break
			}
		}
	}
	for {
		k := "k" + strconv.Itoa(rng.IntN(3000))
		if op := rng.IntN(2); op == 0 {
			k = "s" + strconv.Itoa(rng.IntN(64)) // a few keys: short-lived sets and loads meet often
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		var v []byte
		ok := false // whether v holds a value to check
		op := rng.IntN(16)
		switch {
		case op < 4:
			so := cache.SetOptions{Tags: crashTags(rng)}
			if op == 0 {
				so.Expire = time.Duration(5+rng.IntN(40)) * time.Millisecond
			}
			_, err = c.Set(ctx, k, checksummed(rng), so)
		case op < 5:
			v, ok, err = c.Del(ctx, k)
		case op < 6:
			// The outcome is drawn here: the loader may run in a goroutine
			// of its own (a background refresh), and rng is not shared.
			outcome, val := rng.IntN(8), checksummed(rng)
			v, err = c.Get(ctx, k, func(context.Context, string) ([]byte, error) {
				switch outcome {
				case 0:
					return nil, cache.ErrNotFound
				case 1:
					return nil, errBackend
				}
				return val, nil
			})
			ok = err == nil
			if errors.Is(err, cache.ErrNotFound) || errors.Is(err, errBackend) || errors.Is(err, cache.ErrLoaderFailed) {
				err = nil // what a loader said, here or in another process
			}
		case op < 8: // counters: only Add writes the c keys, so ErrNotCounter is a failure
			ck := "c" + strconv.Itoa(rng.IntN(50))
			var n int64
			if n, err = c.Add(ctx, ck, 1, cache.AddOptions{Tags: crashTags(rng)}); err == nil && n < 1 {
				fail(4, "Add(%q) = %d; a counter only ever added to", ck, n)
			}
		case op < 9:
			if v, ok, err = c.GetInto(nil, k); err == nil && ok && checksumOK(v) {
				_, err = c.CompareAndSwap(ctx, k, v, checksummed(rng), cache.SetOptions{Tags: crashTags(rng)})
				if errors.Is(err, cache.ErrNotFound) { // deleted or evicted meanwhile
					err = nil
				}
			}
		case op < 10:
			_, err = c.SetIfAbsent(ctx, k, checksummed(rng), cache.SetOptions{})
		case op < 11:
			switch r := rng.IntN(500); {
			case r == 0:
				_, err = c.Clear(ctx)
			case r < 50:
				_, err = c.InvalidateTag(ctx, "t"+strconv.Itoa(rng.IntN(8)))
			}
		default:
			v, ok, err = c.GetInto(nil, k)
		}
		cancel()
		if err != nil {
			fail(3, "op %d on %q: %v", op, k, err)
		}
		if ok && !checksumOK(v) {
			fail(4, "torn value for %q (%d bytes, op %d)", k, len(v), op)
		}
		progress.Add(1)
	}
}

// crashTags returns zero to two of the crash test's eight tags.
func crashTags(rng *rand.Rand) []string {
	var tags []string
	for range rng.IntN(3) {
		tags = append(tags, "t"+strconv.Itoa(rng.IntN(8)))
	}
	return tags
}

// shmCounter is a progress counter the crash children bump, in the arena.
func shmCounter(sp *cache.Space) *atomic.Uint64 {
	off, _, err := sp.Arena().Region(context.Background(), "progress", 64, nil)
	if err != nil {
		fail(2, "region: %v", err)
	}
	return shm.Ptr[atomic.Uint64](sp.Arena(), off)
}

// TestCrashAnyInstant: three processes write checksummed values into a cache
// two sizes too small (so evictions run too) while the test kill -9s one of
// them at random moments, dozens of times. No survivor may stall, no read may
// return a torn value, and Verify must find the structures whole.
func TestCrashAnyInstant(t *testing.T) {
	a, sp := newArenaSpace(t, 2<<20)
	progress := shmCounter(sp)
	kills := 40
	if testing.Short() {
		kills = 12
	}
	if v := os.Getenv("CRASH_KILLS"); v != "" {
		kills, _ = strconv.Atoi(v)
	}
	type child struct {
		cmd  *exec.Cmd
		done chan error
	}
	spawn := func() *child {
		cmd := xtesting.Command(t, "crash", []*os.File{a.File()})
		xtesting.Start(t, cmd)
		c := &child{cmd, make(chan error, 1)}
		go func() { c.done <- cmd.Wait() }()
		return c
	}
	children := []*child{spawn(), spawn(), spawn()}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	// Kill at least kills times, and on until some kill hit a writer inside a
	// shard (seen as a repair by whoever took its lock over).
	for k := 0; k < kills || sp.Repairs() < 2; k++ {
		if k == 1000 {
			t.Fatalf("1000 kills and only %d repairs", sp.Repairs())
		}
		before := progress.Load()
		if !xtesting.Eventually(3*time.Second, func() bool { return progress.Load() > before+100 }) {
			t.Fatalf("kill %d: no progress for 3 s: a survivor hangs", k)
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		i := rng.IntN(len(children))
		victim := children[i]
		slot := -1
		for _, s := range a.Slots() {
			if s.Pid == victim.cmd.Process.Pid {
				slot = s.Slot
			}
		}
		victim.cmd.Process.Signal(syscall.SIGKILL)
		<-victim.done
		if k%2 == 0 && slot >= 0 {
			a.ReleaseSlot(slot) // as the master does; the other half, waiters take over
		}
		for _, o := range children {
			select {
			case err := <-o.done:
				if o != victim {
					t.Fatalf("survivor exited: %v (3 = stalled, 4 = torn value)", err)
				}
			default:
			}
		}
		children[i] = spawn()
	}
	// The last children run on long enough to publish their counters
	// (every 100 ms): the check below that stale serving ran reads them.
	time.Sleep(400 * time.Millisecond)
	for _, c := range children {
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
	}
	if err := sp.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, _ := sp.Use("crash", crashOpts)
	keys, _ := c.Keys(context.Background())
	for _, k := range keys {
		if k[0] == 'c' {
			if n, ok, err := c.Counter(context.Background(), k); err != nil || ok && n < 1 {
				t.Fatalf("counter %q left as %d, %v", k, n, err)
			}
			continue
		}
		if v, ok, _ := c.GetInto(nil, k); ok && !checksumOK(v) {
			t.Fatalf("torn value left for %q", k)
		}
	}
	// Every tag walk still works on what the kills left, and removes
	// every entry of its tag.
	for i := range 8 {
		if _, err := c.InvalidateTag(context.Background(), "t"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	t.Logf("%d+ kills, %d repairs, %d ops, %d keys left, %+v", kills, sp.Repairs(), progress.Load(), len(keys), st)
	if st.StaleServes == 0 || st.NegativeHits == 0 || st.Refreshes == 0 {
		t.Fatalf("no stale serve, negative hit or refresh in the whole run: the children no longer exercise them (%+v)", st)
	}
}

// ---- loader once across processes ----

// childLoadOnce waits for the go flag, then Gets "shared" with a loader that
// counts its runs in the arena and takes LOAD_MS. It prints what it got.
func childLoadOnce() {
	_, sp := childSpace()
	c, err := sp.Use("once", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	off, _, err := sp.Arena().Region(context.Background(), "once", 64, nil)
	if err != nil {
		fail(2, "region: %v", err)
	}
	runs := shm.Ptr[atomic.Uint64](sp.Arena(), off)
	start := shm.Ptr[atomic.Uint64](sp.Arena(), off+8)
	ready := shm.Ptr[atomic.Uint64](sp.Arena(), off+16)
	loaderPid := shm.Ptr[atomic.Uint64](sp.Arena(), off+24)
	ms, _ := strconv.Atoi(os.Getenv("LOAD_MS"))
	ready.Add(1)
	for start.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := c.Get(ctx, "shared", func(ctx context.Context, key string) ([]byte, error) {
		loaderPid.Store(uint64(os.Getpid()))
		runs.Add(1)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return []byte("loaded by " + strconv.Itoa(os.Getpid())), nil
	})
	if err != nil {
		fail(3, "get: %v", err)
	}
	fmt.Println(string(v))
}

func TestLoaderOnceAcrossProcesses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		killLoad bool
	}{{"loader lives", false}, {"loader killed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newArenaSpace(t, 4<<20)
			off, _, _ := a.Region(context.Background(), "once", 64, nil)
			runs := shm.Ptr[atomic.Uint64](a, off)
			start := shm.Ptr[atomic.Uint64](a, off+8)
			ready := shm.Ptr[atomic.Uint64](a, off+16)
			loaderPid := shm.Ptr[atomic.Uint64](a, off+24)
			const n = 6
			type res struct {
				pid int
				out []byte
				err error
			}
			results := make(chan res, n)
			cmds := map[int]*exec.Cmd{}
			for range n {
				cmd := xtesting.Command(t, "loadonce", []*os.File{a.File()}, "LOAD_MS=300")
				pr, pw, _ := os.Pipe()
				cmd.Stdout = pw
				xtesting.Start(t, cmd)
				pw.Close()
				cmds[cmd.Process.Pid] = cmd
				go func() {
					var buf [256]byte
					m, _ := pr.Read(buf[:])
					err := cmd.Wait()
					results <- res{cmd.Process.Pid, buf[:m], err}
				}()
			}
			if !xtesting.Eventually(10*time.Second, func() bool { return ready.Load() == n }) {
				t.Fatal("children never got ready")
			}
			start.Store(1)
			if tc.killLoad {
				// Kill the process running the loader, mid-load: a waiter
				// must take the load over.
				if !xtesting.Eventually(10*time.Second, func() bool { return runs.Load() == 1 && loaderPid.Load() != 0 }) {
					t.Fatal("no loader started")
				}
				cmds[int(loaderPid.Load())].Process.Signal(syscall.SIGKILL)
			}
			var values = map[string]int{}
			for range n {
				r := <-results
				if r.err != nil {
					continue // a killed child
				}
				values[string(r.out)]++
			}
			if tc.killLoad {
				if runs.Load() != 2 {
					t.Fatalf("loader ran %d times with its first runner killed; want 2", runs.Load())
				}
			} else if runs.Load() != 1 {
				t.Fatalf("loader ran %d times across %d processes; want 1", runs.Load(), n)
			}
			if len(values) != 1 {
				t.Fatalf("processes got different values: %v", values)
			}
			t.Logf("runs %d, values %v", runs.Load(), values)
		})
	}
}

// ---- watch and statistics across processes ----

// childMutator sets, overwrites and deletes keys w0..w9 of the cache "watched"
// in a known order (one key is left to expire), then reads each key 100 times
// and waits long enough for its statistics to be published.
func childMutator() {
	_, sp := childSpace()
	c, err := sp.Use("watched", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	ctx := context.Background()
	for i := range 10 {
		k := fmt.Sprint("w", i)
		c.Set(ctx, k, []byte("a"), cache.SetOptions{})
		c.Set(ctx, k, []byte("b"), cache.SetOptions{})
		c.Set(ctx, k, []byte("refused"), cache.SetOptions{LeaveIfNotNull: true})
		if i%2 == 0 {
			c.Del(ctx, k)
		}
	}
	c.Set(ctx, "short", []byte("x"), cache.SetOptions{Expire: 20 * time.Millisecond})
	for i := range 10 {
		for range 100 {
			c.GetInto(nil, fmt.Sprint("w", i))
		}
	}
	time.Sleep(300 * time.Millisecond) // the background goroutine publishes every 100 ms
	sp.Sweep()                         // "short" expired by now: its watchers are told
	time.Sleep(200 * time.Millisecond)
}

// TestWatchAndStatsAcrossProcesses: a watcher in this process hears every
// change another process makes, in order per key, and nothing for a refused
// LeaveIfNotNull set or reads; that process's hits are summed into Stats here.
func TestWatchAndStatsAcrossProcesses(t *testing.T) {
	a, sp := newArenaSpace(t, 4<<20)
	c, err := sp.Use("watched", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string][]string{}
	c.Watch("", func(ch cache.Change) {
		mu.Lock()
		got[ch.Key] = append(got[ch.Key], ch.Op.String()+":"+string(ch.Value))
		mu.Unlock()
	})
	cmd := xtesting.Command(t, "mutator", []*os.File{a.File()})
	xtesting.Start(t, cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mutator: %v", err)
	}
	want := func(i int) []string {
		if i%2 == 0 {
			return []string{"set:a", "set:b", "del:"}
		}
		return []string{"set:a", "set:b"}
	}
	ok := xtesting.Eventually(5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["short"]) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range 10 {
		k := fmt.Sprint("w", i)
		if !slices.Equal(got[k], want(i)) {
			t.Fatalf("watcher heard %v for %s; want %v", got[k], k, want(i))
		}
	}
	if !ok || !slices.Equal(got["short"], []string{"set:x", "expire:"}) {
		t.Fatalf("watcher heard %v for the expiring key; want set then expire", got["short"])
	}
	// The other process read the five live keys and the five deleted ones
	// 100 times each.
	if st := c.Stats(); st.Hits != 500 || st.Misses != 500 || st.Expirations != 1 || st.Entries != 5 {
		t.Fatalf("Stats = %+v; want the other process's 500 hits and 500 misses, 1 expiration, 5 entries", st)
	}
}

// ---- atomic operations across processes ----

// childAdder adds 1 to the counter "n" 2000 times, increments the decimal
// value "x" 300 times with CompareAndSwap loops, tries SetIfAbsent of "first"
// once (printing "won" if it stored), and waits for its statistics to be
// published.
func childAdder() {
	_, sp := childSpace()
	c, err := sp.Use("atomic", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	ctx := context.Background()
	for range 2000 {
		if _, err := c.Add(ctx, "n", 1, cache.AddOptions{}); err != nil {
			fail(3, "add: %v", err)
		}
	}
	for range 300 {
		for {
			old, err := c.Get(ctx, "x", nil)
			if err != nil {
				fail(3, "get x: %v", err)
			}
			n, _ := strconv.Atoi(string(old))
			ok, err := c.CompareAndSwap(ctx, "x", old, []byte(strconv.Itoa(n+1)), cache.SetOptions{})
			if err != nil {
				fail(3, "cas: %v", err)
			}
			if ok {
				break
			}
		}
	}
	if ok, err := c.SetIfAbsent(ctx, "first", []byte(strconv.Itoa(os.Getpid())), cache.SetOptions{}); err != nil {
		fail(3, "setifabsent: %v", err)
	} else if ok {
		fmt.Print("won")
	}
	time.Sleep(300 * time.Millisecond) // the background goroutine publishes every 100 ms
}

// TestAtomicOpsAcrossProcesses: three processes add to one counter, CAS-loop
// on one value and race one SetIfAbsent at once; no increment is lost, one
// SetIfAbsent wins, and their counter ops are summed into Stats here.
func TestAtomicOpsAcrossProcesses(t *testing.T) {
	a, sp := newArenaSpace(t, 4<<20)
	c, err := sp.Use("atomic", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(context.Background(), "x", []byte("0"), cache.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	var outs [3]strings.Builder
	var cmds []*exec.Cmd
	for i := range outs {
		cmd := xtesting.Command(t, "adder", []*os.File{a.File()})
		cmd.Stdout = &outs[i]
		xtesting.Start(t, cmd)
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("adder: %v", err)
		}
	}
	won := 0
	for i := range outs {
		if outs[i].String() == "won" {
			won++
		}
	}
	if n, ok, err := c.Counter(context.Background(), "n"); err != nil || !ok || n != 6000 {
		t.Fatalf("counter = %d, %v, %v after 3×2000 Adds from 3 processes; want 6000", n, ok, err)
	}
	if v, _ := c.Get(context.Background(), "x", nil); string(v) != "900" {
		t.Fatalf("x = %q after 3×300 CAS increments; want 900", v)
	}
	if won != 1 {
		t.Fatalf("%d processes won SetIfAbsent; want 1", won)
	}
	if st := c.Stats(); st.CounterOps != 6000 {
		t.Fatalf("Stats.CounterOps = %d; want the other processes' 6000", st.CounterOps)
	}
	if err := sp.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// ---- kill -9 inside tag walks and Clear ----

// walkWords returns the walker's progress counter and its "inside a walk"
// flag, in the arena.
func walkWords(sp *cache.Space) (progress, inWalk *atomic.Uint64) {
	off, _, err := sp.Arena().Region(context.Background(), "walk", 64, nil)
	if err != nil {
		fail(2, "region: %v", err)
	}
	return shm.Ptr[atomic.Uint64](sp.Arena(), off), shm.Ptr[atomic.Uint64](sp.Arena(), off+8)
}

// childWalker sets the keys w0..w999 (half tagged "even", all "all"), then
// invalidates "even" or clears the cache, round after round, until killed.
func childWalker() {
	_, sp := childSpace()
	c, err := sp.Use("walked", cache.Options{})
	if err != nil {
		fail(2, "use: %v", err)
	}
	progress, inWalk := walkWords(sp)
	ctx := context.Background()
	for round := 0; ; round++ {
		for i := range 1000 {
			tags := []string{"all"}
			if i%2 == 0 {
				tags = append(tags, "even")
			}
			if _, err := c.Set(ctx, fmt.Sprint("w", i), []byte(fmt.Sprint(round)), cache.SetOptions{Tags: tags}); err != nil {
				fail(3, "set: %v", err)
			}
			if progress.Add(1)%200 == 0 {
				time.Sleep(time.Millisecond) // the parent's watcher keeps up
			}
		}
		inWalk.Store(1)
		switch round % 3 {
		case 0:
			_, err = c.InvalidateTag(ctx, "even")
		case 1:
			_, err = c.InvalidateTag(ctx, "all")
		default:
			_, err = c.Clear(ctx)
		}
		inWalk.Store(0)
		if err != nil {
			fail(3, "walk: %v", err)
		}
		progress.Add(1)
	}
}

// TestKilledInsideTagWalks: a process that sets tagged keys and invalidates
// tags or clears the cache is killed (kill -9) at random moments, several
// times inside a walk. Verify finds the space whole, every repair of a shard
// a killed writer held reaches the watcher here as OpLost (the writer may
// have died between changing a slot and journalling it), and the watcher's
// mirror (changes in order, a re-read at each OpLost) matches the cache.
func TestKilledInsideTagWalks(t *testing.T) {
	a, err := shm.Create(shm.Options{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	sp, err := cache.Setup(context.Background(), a, cache.SpaceOptions{Bytes: 8 << 20, JournalBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	c, _ := sp.Use("walked", cache.Options{})
	// The watcher mirrors which keys are present, as a mirroring watcher
	// does: each change in order, and on OpLost (a repaired shard may hold
	// a change nobody journalled) a re-read of every key.
	var mu sync.Mutex
	mirror := map[string]bool{}
	heard := 0
	w := c.Watch("", func(ch cache.Change) {
		mu.Lock()
		defer mu.Unlock()
		heard++
		switch {
		case ch.Op == cache.OpLost:
			for i := range 1000 {
				k := fmt.Sprint("w", i)
				_, mirror[k], _ = c.GetInto(nil, k)
			}
		case ch.Deleted():
			mirror[ch.Key] = false
		default:
			mirror[ch.Key] = true
		}
	})
	progress, inWalk := walkWords(sp)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	midWalk := 0
	for k := 0; midWalk < 3; k++ {
		if k == 200 {
			t.Fatalf("200 kills, only %d inside a walk", midWalk)
		}
		cmd := xtesting.Command(t, "walker", []*os.File{a.File()})
		xtesting.Start(t, cmd)
		before := progress.Load()
		if !xtesting.Eventually(5*time.Second, func() bool { return progress.Load() > before+1000+uint64(rng.IntN(1000)) }) {
			t.Fatalf("kill %d: the walker made no progress for 5 s", k)
		}
		for range 1000 { // aim at a walk: it is short
			if inWalk.Load() == 1 {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		was := inWalk.Load()
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if was == 1 {
			midWalk++
		}
		inWalk.Store(0)
		for _, s := range a.Slots() {
			if s.Pid == cmd.Process.Pid && k%2 == 0 {
				a.ReleaseSlot(s.Slot) // as the master does; the other half, the next lock holder takes over
			}
		}
	}
	// Verify first: it takes every shard lock, so it repairs (and
	// journals opRepair for) a shard the last walker died holding.
	if err := sp.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Let the watcher drain: the journal holds what the last walker did.
	prev := -1
	xtesting.Eventually(10*time.Second, func() bool {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		done := heard == prev
		prev = heard
		return done
	})
	if sp.Repairs() > 0 && w.Lost() == 0 {
		t.Fatalf("%d repairs of shards a killed writer held, and the watcher heard no OpLost", sp.Repairs())
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range 1000 {
		k := fmt.Sprint("w", i)
		_, ok, err := c.GetInto(nil, k)
		if err != nil {
			t.Fatal(err)
		}
		if ok != mirror[k] {
			t.Fatalf("%s: present=%v, the watcher's mirror says %v", k, ok, mirror[k])
		}
	}
	t.Logf("%d kills inside a walk, %d changes heard (%d lost), %d repairs", midWalk, heard, w.Lost(), sp.Repairs())
}
