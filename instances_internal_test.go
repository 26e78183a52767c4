package cluster2

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/status"
)

// The monitor shows the Cluster's own instances (the ones Listen made or
// adopted and handed to it), not whatever the package-level defaults are:
// another cache space, status registry and emitter made the defaults after
// Listen change nothing in /status and /metrics. In process, on a real arena,
// a real cache space and a real monitor server over loopback.
func TestMonitorReadsTheClusterInstances(t *testing.T) {
	prevEm, prevReg := emitter.Default(), status.Default()
	t.Cleanup(func() {
		emitter.SetDefault(prevEm)
		status.SetDefault(prevReg)
		cache.SetDefault(nil)
	})
	ctx := context.Background()
	newSpace := func(name string) *cache.Space {
		a, err := shm.Create(shm.Options{Size: 8 << 20, Slots: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		sp, err := cache.Setup(ctx, a, cache.SpaceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sp.Close() })
		c, err := sp.Use(name, cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Set(ctx, "k", []byte("v"), cache.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		return sp
	}

	// What Listen does: adopt the defaults, then the Cluster's space.
	in := newInstances()
	if in.em != prevEm || in.reg != prevReg || in.reg.Emitter() != in.em {
		t.Fatal("newInstances did not adopt the default emitter and its registry")
	}
	sp := newSpace("owned")
	// One of each counted operation on the owned cache (issue 16 item 7).
	if owned, err := sp.Use("owned", cache.Options{}); err == nil {
		owned.Add(ctx, "n", 1, cache.AddOptions{})
		owned.CompareAndSwap(ctx, "k", []byte("not v"), []byte("w"), cache.SetOptions{})
		owned.Set(ctx, "tagged", []byte("v"), cache.SetOptions{Tags: []string{"t"}})
		owned.InvalidateTag(ctx, "t")
	}
	// And of the loader options': a stale serve (and its refresh) and a negative hit.
	if lo, err := sp.Use("loaderopts", cache.Options{StaleFor: time.Minute, NotFoundExpire: time.Minute}); err == nil {
		lo.Set(ctx, "old", []byte("v"), cache.SetOptions{ExpireAt: time.Now().Add(time.Millisecond)})
		time.Sleep(2 * time.Millisecond)
		lo.Get(ctx, "old", func(context.Context, string) ([]byte, error) { return []byte("new"), nil })
		for range 2 {
			lo.Get(ctx, "none", func(context.Context, string) ([]byte, error) { return nil, cache.ErrNotFound })
		}
	}
	in.useSpace(sp)
	if cache.Default() != sp {
		t.Fatal("useSpace did not make the Cluster's space the default")
	}
	in.reg.Register("ownedStatus", func() any { return "mine" }, nil)
	t.Cleanup(func() { in.reg.Unregister("ownedStatus") })
	cfg, err := Config{Handler: http.NotFoundHandler(), MonitorAddr: "127.0.0.1:0", Workers: 1,
		Monitor: MonitorConfig{NoProfiles: true}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	mon, err := startMonitor(cfg, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, sp.Arena(), in, &lifecycle{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mon.close)
	for range 3 {
		in.em.Emit("counted") // no listener: counted as emitted all the same
	}

	// Decoys, made the defaults after "Listen".
	decoyEm, err := emitter.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { decoyEm.Close() })
	decoyReg := status.New(decoyEm)
	t.Cleanup(decoyReg.Close)
	decoyReg.Register("decoyStatus", func() any { return "not mine" }, nil)
	emitter.SetDefault(decoyEm)
	status.SetDefault(decoyReg)
	cache.SetDefault(newSpace("decoy"))

	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + mon.srv.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, b)
		}
		return string(b)
	}
	st := get("/status")
	if !strings.Contains(st, `"ownedStatus"`) || strings.Contains(st, "decoy") {
		t.Errorf("/status does not show the Cluster's registry alone:\n%s", st)
	}
	m := get("/metrics")
	if !strings.Contains(m, `cluster2_cache_entries{cache="owned"} 2`) || strings.Contains(m, "decoy") {
		t.Errorf("/metrics does not show the Cluster's cache space alone:\n%s", m)
	}
	for _, line := range []string{`cluster2_cache_counter_ops_total{cache="owned"} 1`, `cluster2_cache_cas_failures_total{cache="owned"} 1`,
		`cluster2_cache_tag_invalidations_total{cache="owned"} 1`, `cluster2_cache_clears_total{cache="owned"} 0`,
		`cluster2_cache_stale_serves_total{cache="loaderopts"} 1`, `cluster2_cache_negative_hits_total{cache="loaderopts"} 1`,
		`cluster2_cache_hit_ratio{cache="owned"} `, `cluster2_cache_evictions_total{cache="owned"} `} {
		if !strings.Contains(m, line) {
			t.Errorf("/metrics lacks %s:\n%s", line, grepLines(m, "cluster2_cache"))
		}
	}
	if !regexp.MustCompile(`"caches": \{\s*"\d+": \[\s*\{\s*"name": "owned"`).MatchString(st) ||
		!strings.Contains(st, `"counterOps": 1`) || !strings.Contains(st, `"casFailures": 1`) || !strings.Contains(st, `"tagInvalidations": 1`) ||
		!strings.Contains(st, `"staleServes": 1`) || !strings.Contains(st, `"negativeHits": 1`) ||
		!strings.Contains(st, `"hitRatio": `) || !strings.Contains(st, `"evictions": `) {
		t.Errorf("/status does not show the owned cache's figures under caches:\n%s", st)
	}
	if !regexp.MustCompile(`(?m)^cluster2_emitter_emitted_total 3$`).MatchString(m) {
		t.Errorf("/metrics does not count the Cluster's emitter (3 emitted):\n%s", grepLines(m, "emitter"))
	}

	// release clears the cache default only while it is the Cluster's.
	in.release()
	if cache.Default() == nil {
		t.Error("release cleared a default that was not the Cluster's space")
	}
	cache.SetDefault(sp)
	in.release()
	if cache.Default() != nil {
		t.Error("release left the Cluster's closed space as the default")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// newInstances adopts the default emitter, and gives it a registry: the
// default one when it talks over that emitter, otherwise a new one made the
// default (the registry's listeners are on the Cluster's emitter before it
// is attached).
func TestNewInstancesBindsTheRegistryToTheEmitter(t *testing.T) {
	prevEm, prevReg := emitter.Default(), status.Default()
	t.Cleanup(func() {
		emitter.SetDefault(prevEm)
		status.SetDefault(prevReg)
	})
	em, err := emitter.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	emitter.SetDefault(em) // the default registry now talks over another emitter
	in := newInstances()
	t.Cleanup(in.reg.Close)
	if in.em != em {
		t.Fatal("newInstances did not adopt the default emitter")
	}
	if in.reg == prevReg || in.reg.Emitter() != em || status.Default() != in.reg {
		t.Fatal("newInstances did not make a registry on the Cluster's emitter the default")
	}
	if again := newInstances(); again.reg != in.reg {
		t.Fatal("a second Listen did not adopt the registry it made")
	}
}
