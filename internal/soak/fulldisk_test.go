package soak

// The CI part of the soak: its persistence faults, each once, bounded in
// time: a full disk that comes back (master and standalone mode), and a kill
// -9 of the cache manager between a log write and its fdatasync.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// mountTmpfs mounts a tmpfs of size on a fresh directory, unmounted at the
// end; ok is false where mounting is not allowed (not root).
func mountTmpfs(t *testing.T, size string) (string, error) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		return "", err
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir, nil
}

// fillDisk writes a file into dir until its file system is full and returns
// the file's path.
func fillDisk(dir string) (string, error) {
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for _, n := range []int{1 << 20, 4096, 1} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					return path, err
				}
				break
			}
		}
	}
	return path, nil
}

// bigValue is encodeValue with about size bytes of padding (to fill a
// preallocated log segment quickly).
func bigValue(key string, seq uint64, size int) []byte {
	b := binary.AppendUvarint(nil, seq)
	b = append(b, key...)
	b = append(b, ' ')
	b = append(b, bytes.Repeat([]byte{'p'}, size)...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// put PUTs v under key and returns the status and the X-Refused header. It
// reuses the control client's kept-alive connections: Go's transport does not replay a
// PUT, so a worker that closed one under a request would fail the test.
func (c *cluster) put(key string, v []byte) (int, string, error) {
	req, _ := http.NewRequest("PUT", "http://"+c.Addr+"/kv/"+key, bytes.NewReader(v))
	resp, err := c.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.Header.Get("X-Refused") == "" {
		return resp.StatusCode, "", fmt.Errorf("PUT %s: %d %s", key, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return resp.StatusCode, resp.Header.Get("X-Refused"), nil
}

// monitorGet fetches path from the cluster's monitor.
func (c *cluster) monitorGet(path string) (string, error) {
	addr, err := c.MonitorAddr()
	if err != nil {
		return "", err
	}
	if addr == "" {
		return "", errors.New("the monitor is off")
	}
	resp, err := c.Client.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// shutdown stops the cluster gracefully and waits for the master.
func (c *cluster) shutdown() {
	if err := c.Control("/shutdown", nil); err != nil {
		c.t.Errorf("shutdown: %v", err)
	}
	select {
	case <-c.Dead():
	case <-time.After(60 * time.Second):
		c.t.Error("the cluster did not stop within 60 s of a shutdown")
		c.Kill()
	}
}

// verify reads every key of acked after a restart and counts those whose
// value is older than the last acknowledged one (or unreadable).
func (c *cluster) verify(acked map[string]uint64) (lost int) {
	cl := &http.Client{Timeout: 10 * time.Second}
	for key, want := range acked {
		resp, err := cl.Get("http://" + c.Addr + "/kv/" + key)
		if err != nil {
			c.t.Errorf("GET %s: %v", key, err)
			lost++
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		k, seq, err := decodeValue(body)
		if resp.StatusCode != 200 || err != nil || k != key || seq < want {
			c.t.Errorf("after restart, %s: status %d, seq %d (%v); acknowledged seq %d", key, resp.StatusCode, seq, err, want)
			lost++
		}
	}
	return lost
}

// TestFullDiskComesBack: a real cluster whose data directory is a small
// tmpfs. Filled up, PUTs are refused (503, never a 200), /status, /metrics
// and the ECV say so; freed, PUTs succeed by themselves; after a graceful
// restart every acknowledged PUT is there. In both cache modes, EverySecond
// (the durability that lost 270 of 600 acknowledged writes before).
func TestFullDiskComesBack(t *testing.T) {
	for _, mode := range []string{"master", "standalone"} {
		t.Run(mode, func(t *testing.T) {
			// Two 16 MiB log segments (the one filled, the next) and room.
			dir, err := mountTmpfs(t, "40m")
			if err != nil {
				t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
			}
			env := []string{envMode + "=" + mode, envDur + "=" + strconv.Itoa(int(cache.EverySecond)), envMonitor + "=1"}
			c := start(t, dir, env...)
			if !c.Healthy(2, 60*time.Second) {
				t.Fatal("not healthy")
			}
			acked := map[string]uint64{}
			seq := uint64(0)
			putAcked := func(key string, size int) (int, string, error) {
				seq++
				code, refused, err := c.put(key, bigValue(key, seq, size))
				if err == nil && code == 200 {
					acked[key] = seq
				}
				return code, refused, err
			}
			for i := range 20 {
				if code, _, err := putAcked("k"+strconv.Itoa(i), 100); err != nil || code != 200 {
					t.Fatalf("PUT before the fill: %d %v", code, err)
				}
			}
			filler, err := fillDisk(dir)
			if err != nil {
				t.Fatal(err)
			}
			// Fill what the log preallocated; the next segment cannot be.
			deadline := time.Now().Add(30 * time.Second)
			puts := 0
			for {
				if time.Now().After(deadline) {
					t.Fatalf("no PUT refused in 30 s on a full disk (%d accepted)", puts)
				}
				code, refused, err := putAcked("k"+strconv.Itoa(puts%32), 48<<10)
				if err != nil {
					t.Fatal(err)
				}
				if code == 200 {
					puts++
					continue
				}
				if refused != "persist-failing" {
					t.Fatalf("PUT on a full disk refused with %q; want persist-failing", refused)
				}
				break
			}
			st, err := c.monitorGet("/status")
			if err != nil || !strings.Contains(strings.ReplaceAll(st, " ", ""), `"failing":true`) || !strings.Contains(st, "no space left on device") {
				t.Errorf("/status on a full disk: %v %s", err, st)
			}
			m, err := c.monitorGet("/metrics")
			if err != nil || !strings.Contains(m, "cluster2_persist_failing 1") || !strings.Contains(m, "cluster2_persist_failing_errno 28") {
				t.Errorf("/metrics on a full disk: %v (no cluster2_persist_failing 1, errno 28)", err)
			}
			if e, err := c.monitorGet("/ecv"); err != nil || !strings.Contains(e, "ECV DOWN") || !strings.Contains(e, "log cannot be written") {
				t.Errorf("/ecv on a full disk (Cache.DownWhilePersistFailing): %v %q", err, e)
			}
			for i := range 10 { // refused, never acknowledged, while full
				if code, refused, err := putAcked("k"+strconv.Itoa(i), 100); err != nil || code == 200 || refused == "" {
					t.Fatalf("PUT while the disk is full: %d %q %v", code, refused, err)
				}
			}
			if mode == "standalone" {
				// A manager restarted while the disk is full (whether it
				// can open the log or not) keeps the space failing while
				// it retries.
				pid := c.ManagerPid()
				syscall.Kill(pid, syscall.SIGKILL)
				if !xtesting.Eventually(30*time.Second, func() bool {
					time.Sleep(20 * time.Millisecond)
					p := c.ManagerPid()
					return p > 0 && p != pid
				}) {
					t.Fatal("no new cache manager within 30 s")
				}
				time.Sleep(300 * time.Millisecond) // it tried to open the log
				for i := range 10 {
					if code, refused, err := putAcked("k"+strconv.Itoa(i), 100); err != nil || code == 200 || refused == "" {
						t.Fatalf("PUT while the disk is full, after a manager restart: %d %q %v", code, refused, err)
					}
				}
				if m, err := c.monitorGet("/metrics"); err != nil || !strings.Contains(m, "cluster2_persist_failing 1") {
					t.Errorf("/metrics on a full disk after a manager restart: %v (no cluster2_persist_failing 1)", err)
				}
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			resumed := xtesting.Eventually(20*time.Second, func() bool {
				code, _, err := putAcked("k0", 100)
				if err != nil {
					t.Fatal(err)
				}
				if code != 200 {
					time.Sleep(20 * time.Millisecond)
				}
				return code == 200
			})
			if !resumed {
				t.Fatal("PUTs still refused 20 s after the space came back")
			}
			for i := range 64 {
				if code, _, err := putAcked("k"+strconv.Itoa(i), 100); err != nil || code != 200 {
					t.Fatalf("PUT after the recovery: %d %v", code, err)
				}
			}
			if m, err := c.monitorGet("/metrics"); err != nil || !strings.Contains(m, "cluster2_persist_failing 0") || !strings.Contains(m, "cluster2_persist_failures_total 1") {
				t.Errorf("/metrics after the recovery: %v (want failing 0, failures 1)", err)
			}
			if e, err := c.monitorGet("/ecv"); err != nil || !strings.Contains(e, "ECV UP") {
				t.Errorf("/ecv after the recovery: %v %q", err, e)
			}
			c.shutdown()
			c2 := start(t, dir, env...)
			if !c2.Healthy(2, 60*time.Second) {
				t.Fatal("the restarted cluster is not healthy")
			}
			lost := c2.verify(acked)
			t.Logf("%s: %d big PUTs accepted before the disk filled; %d keys acknowledged, %d lost after restart", mode, puts, len(acked), lost)
			if lost > 0 {
				t.Fatalf("%d acknowledged keys lost", lost)
			}
			c2.Kill()
		})
	}
}

// TestKillManagerBetweenWriteAndSync: the standalone cache manager is
// killed -9 after it wrote Always records to its log and before the
// fdatasync; its successor takes over, the writers' Sets return once it has
// synced (none acknowledged without), and after a kill -9 of the whole
// cluster and a restart every acknowledged write is there.
func TestKillManagerBetweenWriteAndSync(t *testing.T) {
	dataDir := t.TempDir()
	trigger := filepath.Join(t.TempDir(), "kill")
	c := start(t, dataDir, envKillAt+"="+trigger)
	if !c.Healthy(2, 60*time.Second) {
		t.Fatal("not healthy")
	}
	acked := map[string]uint64{}
	r := rand.New(rand.NewPCG(1, 2))
	seq := uint64(0)
	put := func(key string) {
		seq++
		code, refused, err := c.put(key, encodeValue(key, seq, r))
		switch {
		case err != nil:
			t.Fatal(err)
		case code == 200:
			acked[key] = seq
		default:
			t.Logf("PUT %s refused (%s): not acknowledged", key, refused)
		}
	}
	for i := range 50 {
		put("k" + strconv.Itoa(i))
	}
	for round := range 3 {
		pid := c.ManagerPid()
		if err := os.WriteFile(trigger, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		put("k" + strconv.Itoa(round)) // its fdatasync never comes: the manager dies first
		if _, err := os.Stat(trigger); err == nil {
			t.Fatal("the manager was not killed before its fdatasync")
		}
		if !xtesting.Eventually(30*time.Second, func() bool {
			time.Sleep(20 * time.Millisecond)
			p := c.ManagerPid()
			return p > 0 && p != pid
		}) {
			t.Fatal("no new cache manager within 30 s")
		}
		for i := range 20 {
			put("k" + strconv.Itoa(i))
		}
	}
	c.Kill()
	c2 := start(t, dataDir)
	if !c2.Healthy(2, 60*time.Second) {
		t.Fatal("the restarted cluster is not healthy")
	}
	lost := c2.verify(acked)
	t.Logf("3 kills between write and fdatasync; %d keys acknowledged, %d lost after a kill -9 and restart", len(acked), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged keys lost", lost)
	}
	c2.Kill()
}
