package soak

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	_ "unsafe" // for go:linkname: persist's beforeSync test hook

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"cluster": childCluster, "plain": clustertest.Child, "redishost": childRedisHost})
}

const (
	envDataDir = "SOAK_DATA_DIR"
	envMode    = "SOAK_MODE"      // Cache.Mode; default standalone
	envDur     = "SOAK_DUR"       // the durability of "kv" (a cache.Durability number); default Always
	envMonitor = "SOAK_MONITOR"   // "1": the monitor on (Cache.DownWhilePersistFailing on)
	envKillAt  = "SOAK_KILL_SYNC" // while this file exists, the cache manager kill -9s itself between a log write and its fdatasync (removing the file)
	numKeys    = 512              // keys of the persistent cache "kv"
	fillValue  = 64 << 10         // the filler's value size
	arenaSize  = 16 << 20         // small, so that the filler goes past capacity quickly
	masterFDs  = 4096             // the master's RLIMIT_NOFILE: small enough to exhaust
)

// brokenWorkers, set at build time (go test -c -ldflags "-X
// github.com/cluster2/cluster2/internal/soak.brokenWorkers=1"), makes the
// soak's broken build: every worker of it fails at start (its ConfigureApp
// returns an error), so that an in-place upgrade to it must go back to the
// build it came from. Empty in the test binary go test builds.
var brokenWorkers = ""

// beforeSync is persist's test hook (persist/hooks.go), nil in a real
// program: the log writer calls it after writing log entries and before
// their fdatasync. The cache manager of a soak cluster sets it to kill -9
// itself there (envKillAt).
//
//go:linkname beforeSync github.com/cluster2/cluster2/persist.beforeSync
var beforeSync func()

// ---- values: key, sequence number, padding, crc32 ----

func encodeValue(key string, seq uint64, r *rand.Rand) []byte {
	pad := make([]byte, 16+r.IntN(200))
	for i := range pad {
		pad[i] = byte('a' + r.IntN(26))
	}
	b := binary.AppendUvarint(nil, seq)
	b = append(b, key...)
	b = append(b, ' ')
	b = append(b, pad...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// decodeValue checks a value's checksum and returns its key and sequence.
func decodeValue(b []byte) (string, uint64, error) {
	if len(b) < 5 {
		return "", 0, fmt.Errorf("value of %d bytes", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return "", 0, fmt.Errorf("checksum mismatch on %d bytes", len(b))
	}
	seq, n := binary.Uvarint(body)
	if n <= 0 {
		return "", 0, errors.New("bad sequence")
	}
	key, _, _ := strings.Cut(string(body[n:]), " ")
	return key, seq, nil
}

// ---- the cluster (master, workers; the cache manager is cluster2's) ----

func childCluster() {
	if cluster2.CurrentRole() == cluster2.Master {
		lim := syscall.Rlimit{Cur: masterFDs, Max: masterFDs}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Printf("LISTEN-ERROR setrlimit: %v\n", err)
			os.Exit(3)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	mux := http.NewServeMux()
	dur := cache.Always
	if d, err := strconv.Atoi(os.Getenv(envDur)); err == nil {
		dur = cache.Durability(d)
	}
	mode := cmp.Or(cluster2.CacheMode(os.Getenv(envMode)), cluster2.CacheStandalone)
	if trigger := os.Getenv(envKillAt); trigger != "" && cluster2.CurrentRole() == cluster2.CacheManager {
		beforeSync = func() {
			if os.Remove(trigger) == nil { // once per trigger file
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	kv := func() (*cache.Cache, error) {
		return cache.Use("kv", cache.Options{Persist: true, Durability: dur})
	}
	mux.HandleFunc("GET /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		c, err := kv()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		v, err := c.Get(r.Context(), r.PathValue("key"), nil)
		if errors.Is(err, cache.ErrNotFound) {
			http.Error(w, "not found", 404)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
		w.Write(v)
	})
	mux.HandleFunc("PUT /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		c, err := kv()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if _, err := c.Set(r.Context(), r.PathValue("key"), body, cache.SetOptions{}); err != nil {
			// Refused (a full disk: nothing stored) or stored but not known
			// durable: not acknowledged, by design; 503 says so.
			switch {
			case errors.Is(err, cache.ErrNotDurable):
				w.Header().Set("X-Refused", "not-durable")
				http.Error(w, err.Error(), 503)
			case errors.Is(err, cache.ErrPersistFailing):
				w.Header().Set("X-Refused", "persist-failing")
				http.Error(w, err.Error(), 503)
			default:
				http.Error(w, err.Error(), 500)
			}
			return
		}
		w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
	})
	// POST /pad?n=N sets N values of 48 KiB into the persistent
	// EverySecond cache "pad" (32 keys) and answers how many were refused:
	// it fills the log's preallocated segment in seconds, so that a full
	// disk shows.
	mux.HandleFunc("POST /pad", func(w http.ResponseWriter, r *http.Request) {
		c, err := cache.Use("pad", cache.Options{Persist: true, Durability: cache.EverySecond})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		v := bytes.Repeat([]byte{'p'}, 48<<10)
		refused := 0
		for i := range n {
			if _, err := c.Set(r.Context(), "pad-"+strconv.Itoa(i%32), v, cache.SetOptions{}); err != nil {
				if !errors.Is(err, cache.ErrPersistFailing) {
					http.Error(w, err.Error(), 500)
					return
				}
				refused++
			}
		}
		fmt.Fprintf(w, "%d\n", refused)
	})
	// POST /fill?n=N sets N values of 64 KiB with fresh keys into the
	// non-persistent cache "big": past the arena's capacity, it evicts.
	mux.HandleFunc("POST /fill", func(w http.ResponseWriter, r *http.Request) {
		c, err := cache.Use("big", cache.Options{})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		v := bytes.Repeat([]byte{'x'}, fillValue)
		refused := 0
		for i := range n {
			if _, err := c.Set(r.Context(), fmt.Sprintf("big-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), i), v, cache.SetOptions{}); err != nil {
				refused++
			}
		}
		fmt.Fprintf(w, "%d %d\n", n, refused)
	})
	monitorOn := os.Getenv(envMonitor) == "1"
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: 2, Addr: "127.0.0.1:0", MonitorAddr: "127.0.0.1:0",
		Monitor:           cluster2.MonitorConfig{Disabled: !monitorOn, NoProfiles: true},
		Handler:           mux,
		Logger:            log,
		HeartbeatInterval: 500 * time.Millisecond,
		ReplaceTimeout:    20 * time.Second,
		StopTimeout:       20 * time.Second,
		ArenaSize:         arenaSize,
		ConfigureApp: func(_ context.Context, h http.Handler) (http.Handler, error) {
			if brokenWorkers != "" {
				return nil, errors.New("built to fail every worker (soak.brokenWorkers)")
			}
			return h, nil
		},
		Cache: cluster2.CacheConfig{Enabled: true, Mode: mode,
			DataDir: os.Getenv(envDataDir), Durability: cache.Always, DownWhilePersistFailing: monitorOn},
	})
	if err != nil {
		fmt.Printf("LISTEN-ERROR %v\n", err)
		os.Exit(3)
	}
	if !c.IsMaster() {
		c.Wait()
		return
	}
	// The master watches "kv" and keeps each key's last change, so that the
	// driver can tell an eviction (the key is gone by design) from a loss.
	var mu sync.Mutex
	last := map[string]string{}
	if kvc, err := kv(); err == nil {
		kvc.Watch("", func(ch cache.Change) {
			s := ch.Op.String()
			if ch.Op == cache.OpSet {
				if _, seq, err := decodeValue(ch.Value); err == nil {
					s = "set:" + strconv.FormatUint(seq, 10)
				}
			}
			mu.Lock()
			last[ch.Key] = s
			mu.Unlock()
		})
	} else {
		fmt.Printf("LISTEN-ERROR kv: %v\n", err)
		os.Exit(3)
	}
	ctl := clustertest.ControlMux(c)
	ctl.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.UpgradeStatus())
	})
	ctl.HandleFunc("/last", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(last)
	})
	clustertest.Serve(c, ctl)
}

// ---- the driver ----

// cluster is the soak's cluster, started by start.
type cluster struct {
	*clustertest.Process
	t *testing.T
}

// start starts the soak's cluster on dataDir and waits (up to 90 s: longer
// is a hang) for its READY line. Its control client gives up after 30 s.
func start(t *testing.T, dataDir string, env ...string) *cluster {
	t.Helper()
	return startFrom(t, "", dataDir, env...)
}

// startFrom is start with the cluster run from the binary at exe (a copy
// of the test binary; "": the test binary itself).
func startFrom(t *testing.T, exe, dataDir string, env ...string) *cluster {
	t.Helper()
	spec := clustertest.Spec{Child: "cluster", Env: append([]string{envDataDir + "=" + dataDir}, env...), ReadyTimeout: 90 * time.Second}
	if exe != "" {
		spec.Wrap = func(cmd *exec.Cmd) { cmd.Path, cmd.Args[0] = exe, exe }
	}
	p := spec.Start(t)
	p.Client.Timeout = 30 * time.Second
	return &cluster{p, t}
}

// stats are the soak's counters.
type stats struct {
	requests, failed, inflightKilled, torn, hangs atomic.Int64
	kills, restarts, lost, evicted, fills         atomic.Int64
	pauses, managerKills, workerKills             atomic.Int64
	exhaustions, respawnRetries, keepAlivePuts    atomic.Int64
	refused, fullDisks, syncKills                 atomic.Int64
	upgrades, wentBack, upgradeErrors             atomic.Int64
}

// killLog remembers when workers were killed, to tell the failures of
// requests in flight on a killed worker from the others.
type killLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (k *killLog) add(t time.Time) { k.mu.Lock(); k.times = append(k.times, t); k.mu.Unlock() }

// covers reports whether a worker was killed while a request that started at
// from and failed at to was in flight (with a little slack for the client to
// see the reset).
func (k *killLog) covers(from, to time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, t := range k.times {
		if !t.Before(from.Add(-50*time.Millisecond)) && !t.After(to) {
			return true
		}
	}
	return false
}

// keyState is what the writers know of a key: the last acknowledged
// sequence, and the highest one ever sent (possibly applied without ack).
type keyState struct {
	mu          sync.Mutex
	acked, sent uint64
}

func TestSoak(t *testing.T) {
	if os.Getenv("CLUSTER2_SOAK") == "" {
		t.Skip("the chaos soak runs with CLUSTER2_SOAK=1 (CLUSTER2_SOAK_MINUTES, default 10)")
	}
	minutes := 10.0
	if m, err := strconv.ParseFloat(os.Getenv("CLUSTER2_SOAK_MINUTES"), 64); err == nil && m > 0 {
		minutes = m
	}
	dur := time.Duration(minutes * float64(time.Minute))
	// The data directory is a small tmpfs, so that the driver can fill it
	// (two 16 MiB log segments, a snapshot, room).
	dataDir, err := mountTmpfs(t, "64m")
	if err != nil {
		t.Logf("no full disks in this soak: cannot mount a tmpfs (needs root): %v", err)
		dataDir = t.TempDir()
	}
	diskFaults := err == nil
	trigger := filepath.Join(t.TempDir(), "kill-before-sync")
	// The cluster runs from a copy of the test binary, so that builds can
	// be renamed over its path and upgraded to in place.
	dep := newDeployer(t, t.TempDir())
	c := startFrom(t, dep.exe, dataDir, envKillAt+"="+trigger)
	if !c.Healthy(2, 60*time.Second) {
		t.Fatal("the cluster is not healthy 60 s after start")
	}
	up := newUpgrades(t, c, dep)
	var upTimes, backTimes []time.Duration
	var st stats
	var kl killLog
	keys := make([]keyState, numKeys)
	var failMu sync.Mutex
	failSamples := map[string]int{}
	noteFail := func(kind string, err error) {
		failMu.Lock()
		defer failMu.Unlock()
		msg := kind + ": " + err.Error()
		if len(msg) > 120 {
			msg = msg[:120]
		}
		// group by the message without numbers (ports, pids)
		msg = strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, msg)
		failSamples[msg]++
	}

	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 64},
		Timeout:   20 * time.Second, // a request past this is a hang
	}
	keepAlive := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1},
		Timeout:   20 * time.Second,
	}
	// doWith runs one request with cl and classifies its outcome.
	doWith := func(cl *http.Client, kind string, req *http.Request) (*http.Response, []byte, bool) {
		st.requests.Add(1)
		t0 := time.Now()
		resp, err := cl.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 503 && resp.Header.Get("X-Refused") != "" {
				// Refused while the log cannot be written, or stored but
				// not known durable: not acknowledged, by design.
				st.refused.Add(1)
				return nil, nil, false
			}
			if err == nil && resp.StatusCode >= 500 {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
			}
		}
		if err == nil {
			return resp, body, true
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			st.hangs.Add(1)
			st.failed.Add(1)
			noteFail(kind+" timeout", err)
		case kl.covers(t0, time.Now()):
			st.inflightKilled.Add(1)
		default:
			st.failed.Add(1)
			noteFail(kind, err)
		}
		return nil, nil, false
	}
	do := func(kind string, req *http.Request) (*http.Response, []byte, bool) { return doWith(client, kind, req) }

	var wg sync.WaitGroup
	// Writers: each owns a slice of the keys, so a key's writes are
	// sequential and its sequence numbers increase. The last two PUT on
	// keep-alive connections (each goroutine of them one at a time).
	const writers, readers, keepAliveWriters = 6, 4, 2
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for ctx.Err() == nil {
				i := w + writers*r.IntN(numKeys/writers)
				k := &keys[i]
				key := "k" + strconv.Itoa(i)
				k.mu.Lock()
				k.sent++
				seq := k.sent
				k.mu.Unlock()
				req, _ := http.NewRequest("PUT", "http://"+c.Addr+"/kv/"+key, bytes.NewReader(encodeValue(key, seq, r)))
				cl, kind := client, "put"
				if w >= writers-keepAliveWriters {
					cl, kind = keepAlive, "keep-alive put"
					st.keepAlivePuts.Add(1)
				}
				if _, _, ok := doWith(cl, kind, req); ok {
					k.mu.Lock()
					k.acked = max(k.acked, seq)
					k.mu.Unlock()
				}
			}
		})
	}
	for rd := range readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			for ctx.Err() == nil {
				i := r.IntN(numKeys)
				key := "k" + strconv.Itoa(i)
				req, _ := http.NewRequest("GET", "http://"+c.Addr+"/kv/"+key, nil)
				resp, body, ok := do("get", req)
				if !ok || resp.StatusCode != 200 {
					continue
				}
				if k, seq, err := decodeValue(body); err != nil || k != key {
					st.torn.Add(1)
					t.Errorf("torn read of %s: key %q seq %d err %v (%d bytes)", key, k, seq, err, len(body))
				} else {
					keys[i].mu.Lock()
					sent := keys[i].sent
					keys[i].mu.Unlock()
					if seq > sent {
						st.torn.Add(1)
						t.Errorf("read of %s returned seq %d, never sent (sent %d)", key, seq, sent)
					}
				}
			}
		})
	}

	// The driver: a random action every 2 to 8 s, then a bounded wait for
	// the cluster to be whole again.
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	actions := 0
	progress := time.NewTicker(time.Minute)
	defer progress.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-progress.C:
			t.Logf("progress: %d requests, %d failed, %d in flight on killed workers, %d kills, %d restarts, %d fills, %d pauses, %d descriptor exhaustions, %d upgrades (%d went back)",
				st.requests.Load(), st.failed.Load(), st.inflightKilled.Load(), st.kills.Load(), st.restarts.Load(), st.fills.Load(), st.pauses.Load(), st.exhaustions.Load(),
				st.upgrades.Load(), st.wentBack.Load())
			continue
		case <-time.After(time.Duration(2000+r.IntN(6000)) * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
		pids, err := c.Active()
		if err != nil {
			st.hangs.Add(1)
			t.Errorf("control: %v", err)
			continue
		}
		x := r.IntN(116)
		switch actions++; actions { // the first actions: a short soak has one of each too
		case 1:
			x = 0 // descriptors exhausted
		case 2:
			x = 100 // an upgrade to a good build
		case 3:
			x = 108 // one to the broken build
		}
		switch {
		case x >= 100: // an in-place upgrade (SIGUSR2) to the other good build, or from 108 to the broken build: the master goes back
			broken := x >= 108 && dep.broken != ""
			run, times := up.good, &upTimes
			if broken {
				run, times = up.failed, &backTimes
			}
			took, err := run()
			if err != nil {
				st.upgradeErrors.Add(1)
				t.Errorf("in-place upgrade (to the broken build: %v): %v", broken, err)
				break
			}
			st.upgrades.Add(1)
			if broken {
				st.wentBack.Add(1)
			}
			*times = append(*times, took)
		case x < 8 && len(pids) > 0: // the master out of descriptors while a killed worker is respawned
			if err := c.Control("/exhaust?leave=2", nil); err != nil {
				t.Errorf("exhaust: %v", err)
				break
			}
			st.exhaustions.Add(1)
			pid := pids[r.IntN(len(pids))]
			kl.add(time.Now())
			syscall.Kill(pid, syscall.SIGKILL)
			st.kills.Add(1)
			st.workerKills.Add(1)
			// The respawn fails until the descriptors are back: the master
			// says so and keeps trying.
			var pending []cluster2.Respawn
			if xtesting.Eventually(10*time.Second, func() bool {
				time.Sleep(50 * time.Millisecond)
				pending = nil
				return c.Control("/respawning", &pending) == nil && len(pending) > 0
			}) {
				st.respawnRetries.Add(int64(pending[0].Attempts))
			} else {
				t.Logf("exhaustion: no failed respawn seen (the respawn may have come first)")
			}
			time.Sleep(time.Duration(500+r.IntN(2500)) * time.Millisecond)
			if err := c.Control("/free", nil); err != nil {
				st.hangs.Add(1)
				t.Errorf("free: %v", err)
			}
		case x < 30 && len(pids) > 0: // kill -9 a worker
			pid := pids[r.IntN(len(pids))]
			kl.add(time.Now())
			syscall.Kill(pid, syscall.SIGKILL)
			st.kills.Add(1)
			st.workerKills.Add(1)
		case x < 45: // kill -9 the cache manager, half of the time between a log write and its fdatasync
			if pid := c.ManagerPid(); pid > 0 {
				if r.IntN(2) == 0 {
					os.WriteFile(trigger, nil, 0o600)
					if xtesting.Eventually(10*time.Second, func() bool {
						time.Sleep(5 * time.Millisecond)
						_, err := os.Stat(trigger)
						return err != nil
					}) {
						st.syncKills.Add(1)
					} else {
						os.Remove(trigger) // no write came: kill it plainly
						syscall.Kill(pid, syscall.SIGKILL)
					}
				} else {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				st.kills.Add(1)
				st.managerKills.Add(1)
				// bounded: the master restarts it
				if !xtesting.Eventually(30*time.Second, func() bool {
					time.Sleep(20 * time.Millisecond)
					p := c.ManagerPid()
					return p > 0 && p != pid
				}) {
					st.hangs.Add(1)
					t.Errorf("no new cache manager 30 s after kill -9 of %d", pid)
				}
			}
		case x < 60: // SIGHUP: rolling restart
			syscall.Kill(c.Pid(), syscall.SIGHUP)
			st.restarts.Add(1)
			old := map[int]bool{}
			for _, p := range pids {
				old[p] = true
			}
			if !xtesting.Eventually(90*time.Second, func() bool {
				time.Sleep(50 * time.Millisecond)
				now, err := c.Active()
				if err != nil || len(now) != 2 {
					return false
				}
				for _, p := range now {
					if old[p] {
						return false
					}
				}
				return true
			}) {
				st.hangs.Add(1)
				t.Errorf("rolling restart did not replace every worker within 90 s")
			}
		case x < 70 && diskFaults: // a full disk for 1 to 4 s, then the space comes back
			filler, err := fillDisk(dataDir)
			if err != nil {
				t.Errorf("fill the disk: %v", err)
				break
			}
			st.fullDisks.Add(1)
			// Fill the log's preallocated segment: Sets are refused.
			refusedPads := xtesting.Eventually(30*time.Second, func() bool {
				req, _ := http.NewRequest("POST", "http://"+c.Addr+"/pad?n=64", nil)
				_, body, ok := do("pad", req)
				return ok && strings.TrimSpace(string(body)) != "0"
			})
			if !refusedPads {
				t.Errorf("no Set refused within 30 s of a full disk")
			}
			time.Sleep(time.Duration(1000+r.IntN(3000)) * time.Millisecond)
			os.Remove(filler)
			if !xtesting.Eventually(30*time.Second, func() bool {
				time.Sleep(20 * time.Millisecond)
				req, _ := http.NewRequest("POST", "http://"+c.Addr+"/pad?n=1", nil)
				_, body, ok := do("pad", req)
				return ok && strings.TrimSpace(string(body)) == "0"
			}) {
				st.hangs.Add(1)
				t.Errorf("Sets still refused 30 s after the space came back")
			}
		case x < 80: // fill the arena past its capacity (two fills of 16 MiB)
			for range 2 {
				req, _ := http.NewRequest("POST", "http://"+c.Addr+"/fill?n=256", nil)
				if _, body, ok := do("fill", req); ok {
					if st.fills.Add(1) == 1 {
						t.Logf("first fill (values set, refused): %s", strings.TrimSpace(string(body)))
					}
				}
			}
		default: // pause a worker for 0.5 to 3 s, then resume it
			if len(pids) < 2 {
				break
			}
			pid := pids[r.IntN(len(pids))]
			if err := c.Control("/pause?pid="+strconv.Itoa(pid), nil); err != nil {
				t.Logf("pause %d: %v", pid, err) // it may have died meanwhile
				break
			}
			st.pauses.Add(1)
			time.Sleep(time.Duration(500+r.IntN(2500)) * time.Millisecond)
			if err := c.Control("/resume?pid="+strconv.Itoa(pid), nil); err != nil {
				t.Errorf("resume %d: %v", pid, err)
			}
		}
		if !c.Healthy(2, 90*time.Second) {
			st.hangs.Add(1)
			t.Errorf("the cluster did not get two active workers back within 90 s")
		}
	}
	// The load stops; every write it got an answer for is settled.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		st.hangs.Add(1)
		t.Fatal("the load did not stop within 60 s")
	}
	time.Sleep(time.Second) // the master's watcher catches up
	if err := up.keepLast(); err != nil {
		t.Fatalf("last changes: %v", err)
	}
	last := up.last // what every image of the master saw
	// A full kill -9 of the cluster, then a restart on the same data.
	c.Kill()
	st.kills.Add(1)
	c2 := start(t, dataDir)
	st.restarts.Add(1)
	if !c2.Healthy(2, 60*time.Second) {
		t.Fatal("the restarted cluster is not healthy within 60 s")
	}
	getCl := &http.Client{Timeout: 10 * time.Second}
	for i := range keys {
		k := &keys[i]
		if k.acked == 0 {
			continue
		}
		key := "k" + strconv.Itoa(i)
		resp, err := getCl.Get("http://" + c2.Addr + "/kv/" + key)
		if err != nil {
			t.Errorf("after restart, GET %s: %v", key, err)
			st.lost.Add(1)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 404 && strings.HasPrefix(last[key], "evict"):
			st.evicted.Add(1) // evicted to make room: gone by design, not lost
		case resp.StatusCode != 200:
			st.lost.Add(1)
			t.Errorf("after restart, %s: status %d (acked seq %d, last change seen %q)", key, resp.StatusCode, k.acked, last[key])
		default:
			kk, seq, err := decodeValue(body)
			switch {
			case err != nil || kk != key:
				st.torn.Add(1)
				t.Errorf("after restart, %s: torn value (%v)", key, err)
			case seq < k.acked && strings.HasPrefix(last[key], "evict"):
				st.evicted.Add(1) // an older value cannot come back after an evict; still, count apart
				t.Errorf("after restart, %s: seq %d < acked %d after an eviction", key, seq, k.acked)
			case seq < k.acked:
				st.lost.Add(1)
				t.Errorf("after restart, %s: seq %d; acknowledged %d", key, seq, k.acked)
			case seq > k.sent:
				st.torn.Add(1)
				t.Errorf("after restart, %s: seq %d never sent", key, seq)
			}
		}
	}
	c2.Kill()
	failMu.Lock()
	for m, n := range failSamples {
		t.Logf("failures: %d× %s", n, m)
	}
	failMu.Unlock()
	t.Logf("upgrades: %d in place to a good build (SIGUSR2; check to every worker on it: %s), %d to a broken build that went back (%s); %d upgrade errors",
		st.upgrades.Load()-st.wentBack.Load(), spread(upTimes), st.wentBack.Load(), spread(backTimes), st.upgradeErrors.Load())
	t.Logf("details: %s soak; %d worker kills, %d cache-manager kills (%d between a log write and its fdatasync), 1 full kill; %d rolling restarts + 1 full restart; %d fills of 16 MiB; %d full disks; %d pauses; %d master descriptor exhaustions (%d failed respawn attempts retried); %d keep-alive PUTs; %d requests failed in flight on a killed worker; %d PUTs refused (not acknowledged: full disk, or not known durable); %d keys evicted (not lost); %d torn; %d hangs",
		dur, st.workerKills.Load(), st.managerKills.Load(), st.syncKills.Load(), st.restarts.Load()-1, st.fills.Load(), st.fullDisks.Load(), st.pauses.Load(),
		st.exhaustions.Load(), st.respawnRetries.Load(), st.keepAlivePuts.Load(),
		st.inflightKilled.Load(), st.refused.Load(), st.evicted.Load(), st.torn.Load(), st.hangs.Load())
	summary := fmt.Sprintf("%d requests, %d failed, %d kills, %d restarts, %d upgrades (%d went back), %d lost",
		st.requests.Load(), st.failed.Load(), st.kills.Load(), st.restarts.Load(), st.upgrades.Load(), st.wentBack.Load(), st.lost.Load())
	fmt.Println("SOAK:", summary)
	t.Log(summary)
	if st.failed.Load() > 0 || st.lost.Load() > 0 || st.torn.Load() > 0 || st.hangs.Load() > 0 || st.upgradeErrors.Load() > 0 {
		t.Errorf("soak: %s; %d torn, %d hangs, %d upgrade errors", summary, st.torn.Load(), st.hangs.Load(), st.upgradeErrors.Load())
	}
}
