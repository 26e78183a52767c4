package soak

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// deployer holds the builds the soak deploys in place and renames them over
// the path its cluster runs from, as a deploy does: two good builds (two
// copies of the test binary: two files, which is all the upgrade tells
// builds apart by, the inode) taken in turn, and a broken one (the soak's
// package built with brokenWorkers set: its workers fail at start), if the
// go command could build it.
type deployer struct {
	exe    string    // the path the cluster runs from
	good   [2]string // the good builds, taken in turn
	next   int       // the good build deployed next
	broken string    // "" when it could not be built
}

// newDeployer copies the test binary into dir as the two good builds and
// as the path the cluster runs from (the first good build), and builds the
// broken one; without it (no go command, or the build failed) the soak
// has no failed upgrades, and says why.
func newDeployer(t *testing.T, dir string) *deployer {
	t.Helper()
	d := &deployer{exe: filepath.Join(dir, "soak.test"), next: 1}
	for i, name := range []string{"good-a", "good-b"} {
		d.good[i] = filepath.Join(dir, name)
		if err := copyExe(os.Args[0], d.good[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyExe(d.good[0], d.exe); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken")
	out, err := exec.Command("go", "test", "-c", "-o", broken, "-ldflags",
		"-X github.com/cluster2/cluster2/internal/soak.brokenWorkers=1", ".").CombinedOutput()
	if err != nil {
		t.Logf("no failed upgrades in this soak: building the broken build: %v\n%s", err, out)
		return d
	}
	d.broken = broken
	return d
}

// copyExe copies the executable from to to (mode 0755).
func copyExe(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// put renames a copy of the build src over the cluster's path and returns
// the file's identity (it stays that file when the next build is renamed
// over the path: a running process keeps it).
func (d *deployer) put(src string) (os.FileInfo, error) {
	if err := copyExe(src, d.exe+".new"); err != nil {
		return nil, err
	}
	fi, err := os.Stat(d.exe + ".new")
	if err != nil {
		return nil, err
	}
	return fi, os.Rename(d.exe+".new", d.exe)
}

// upgrades drives the soak's in-place upgrades: it follows the master's
// images (each prints its own READY line with its own control server),
// keeps what each image's watcher saw of "kv" (the next image's starts
// empty), and knows which file the workers run.
type upgrades struct {
	*deployer
	c       *cluster
	ready   chan string       // the READY lines after the first
	last    map[string]string // the last change of each kv key, every image's
	running os.FileInfo       // the build the workers run
	start   uint64            // the master's start time: the same process throughout
}

func newUpgrades(t *testing.T, c *cluster, d *deployer) *upgrades {
	t.Helper()
	fi, err := os.Stat(d.exe)
	if err != nil {
		t.Fatal(err)
	}
	start, err := shm.ProcessStartTime(c.Pid())
	if err != nil {
		t.Fatal(err)
	}
	u := &upgrades{deployer: d, c: c, ready: make(chan string, 64), last: map[string]string{}, running: fi, start: start}
	go func() {
		for l := range c.Lines() {
			if strings.HasPrefix(l, "READY ") {
				select {
				case u.ready <- l:
				default:
				}
			}
		}
	}()
	return u
}

// keepLast merges the current image's last changes into u.last.
func (u *upgrades) keepLast() error {
	var last map[string]string
	if err := u.c.Control("/last", &last); err != nil {
		return err
	}
	maps.Copy(u.last, last)
	return nil
}

// upgrade renames src over the cluster's path, sends SIGUSR2 to the master
// and waits (up to 90 s: longer is a hang) for the upgrade's outcome as the
// master's last image reports it, following each new image's control
// server. It returns the outcome, and an error for a hang or a master that
// is not the same process.
func (u *upgrades) upgrade(src string) (cluster2.UpgradeStatus, os.FileInfo, error) {
	var st cluster2.UpgradeStatus
	if err := u.keepLast(); err != nil {
		return st, nil, fmt.Errorf("last changes before the upgrade: %w", err)
	}
	fi, err := u.put(src)
	if err != nil {
		return st, nil, err
	}
	asked := time.Now()
	if err := syscall.Kill(u.c.Pid(), syscall.SIGUSR2); err != nil {
		return st, fi, err
	}
	for deadline := asked.Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for more := true; more; {
			select {
			case l := <-u.ready:
				if f := strings.Fields(l); len(f) >= 3 {
					u.c.Ctl = f[2]
				}
			default:
				more = false
			}
		}
		st = cluster2.UpgradeStatus{}
		if err := u.c.Control("/upgrade", &st); err != nil {
			continue // between images
		}
		// Started is the master's clock when it began: not before asked
		// (the image before may still answer with the last upgrade's).
		if !st.Started.Before(asked) && (st.State == "done" || st.State == "failed") {
			if start, err := shm.ProcessStartTime(u.c.Pid()); err != nil || start != u.start {
				return st, fi, fmt.Errorf("the master %d: start time %d (%v), want %d: not the same process", u.c.Pid(), start, err, u.start)
			}
			return st, fi, nil
		}
	}
	return st, fi, fmt.Errorf("no outcome of the upgrade to %s within 90 s (last status %+v)", src, st)
}

// workersOn returns an error unless every active worker runs the file fi
// (/proc/<pid>/exe).
func (u *upgrades) workersOn(fi os.FileInfo, what string) error {
	pids, err := u.c.Active()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		w, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
		if err == nil && !os.SameFile(w, fi) {
			return fmt.Errorf("worker %d does not run %s", pid, what)
		}
	}
	return nil
}

// good upgrades to the next good build; it wants "done" and every worker
// on that build.
func (u *upgrades) good() (time.Duration, error) {
	src := u.deployer.good[u.next]
	st, fi, err := u.upgrade(src)
	if err != nil {
		return 0, err
	}
	if st.State != "done" {
		return 0, fmt.Errorf("the upgrade to a good build (%s): %s: %s", filepath.Base(src), st.State, st.Error)
	}
	if !u.c.Healthy(2, 90*time.Second) {
		return 0, fmt.Errorf("no two active workers within 90 s of the upgrade")
	}
	if err := u.workersOn(fi, "the new build"); err != nil {
		return 0, err
	}
	u.running, u.next = fi, 1-u.next
	return st.Ended.Sub(st.Started), nil
}

// failed upgrades to the broken build; it wants "failed" (the master went
// back) and every worker on the build it ran before. Then the next good
// build is renamed over the path, as one who deploys puts a good build
// back (the next upgrade goes to it).
func (u *upgrades) failed() (time.Duration, error) {
	st, _, err := u.upgrade(u.broken)
	if err != nil {
		return 0, err
	}
	if _, perr := u.put(u.deployer.good[u.next]); perr != nil {
		return 0, perr
	}
	if st.State != "failed" {
		return 0, fmt.Errorf("the upgrade to the broken build: %s, want failed (the way back)", st.State)
	}
	if !u.c.Healthy(2, 90*time.Second) {
		return 0, fmt.Errorf("no two active workers within 90 s of the failed upgrade")
	}
	if err := u.workersOn(u.running, "the build before the failed upgrade"); err != nil {
		return 0, err
	}
	return st.Ended.Sub(st.Started), nil
}

// spread is "min–max (n)" of ds, "none" when empty.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	return fmt.Sprintf("%v–%v over %d", slices.Min(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond), len(ds))
}

// The soak's upgrade faults once, bounded: an in-place upgrade to a good
// build, then one to the broken build (the master goes back), then a kill -9
// of a worker, which must be respawned on the build gone back to, and a
// SIGHUP, which must replace every worker with that build too. The
// master spawns from the previous binary's descriptor after the way back;
// the soak found that respawn failing for ever (EACCES) when that path was
// /proc/self/fd/<n> with n one of a child's fixed descriptors (the soak's
// master, with no monitor, had the descriptor at 5: the death pipe's number
// in a child).
func TestUpgradeFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the soak's broken build (go test -c)")
	}
	dep := newDeployer(t, t.TempDir())
	if dep.broken == "" {
		t.Skip("no broken build (see the log)")
	}
	c := startFrom(t, dep.exe, t.TempDir())
	if !c.Healthy(2, 60*time.Second) {
		t.Fatal("the cluster is not healthy 60 s after start")
	}
	up := newUpgrades(t, c, dep)
	if _, err := up.good(); err != nil {
		t.Fatalf("upgrade to a good build: %v", err)
	}
	if _, err := up.failed(); err != nil {
		t.Fatalf("upgrade to the broken build: %v", err)
	}
	pids, err := c.Active()
	if err != nil || len(pids) != 2 {
		t.Fatalf("active workers %v, %v", pids, err)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	if !xtesting.Eventually(30*time.Second, func() bool {
		time.Sleep(50 * time.Millisecond)
		now, err := c.Active()
		return err == nil && len(now) == 2 && !slices.Contains(now, pids[0])
	}) {
		t.Fatalf("worker %d killed after the way back is not respawned within 30 s (respawns %s)", pids[0], respawning(c))
	}
	if err := up.workersOn(up.running, "the build gone back to"); err != nil {
		t.Error(err)
	}
	// A rolling restart then checks that binary and spawns from it too.
	before, _ := c.Active()
	syscall.Kill(c.Pid(), syscall.SIGHUP)
	if !xtesting.Eventually(60*time.Second, func() bool {
		time.Sleep(50 * time.Millisecond)
		now, err := c.Active()
		return err == nil && len(now) == 2 && !slices.ContainsFunc(now, func(p int) bool { return slices.Contains(before, p) })
	}) {
		t.Fatalf("SIGHUP after the way back did not replace workers %v within 60 s", before)
	}
	if err := up.workersOn(up.running, "the build gone back to"); err != nil {
		t.Error(err)
	}
}

// respawning is the master's pending respawns, for a failure's message.
func respawning(c *cluster) string {
	var r []cluster2.Respawn
	if err := c.Control("/respawning", &r); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", r)
}
