package cluster2_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// pidFiles returns the names of the files in dir, sorted.
func pidFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestKill9PidFilesRemovedAtNextStart: a master killed with SIGKILL leaves
// its pid file and its workers'; the next start of a cluster on the same
// PidDir removes those (their pids are dead) and keeps a live pid's.
func TestKill9PidFilesRemovedAtNextStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pids")
	tc := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvPidDir+"="+dir)
	old := []int{tc.Cmd.Process.Pid}
	for pid := range tc.ActivePids() {
		old = append(old, pid)
	}
	before := pidFiles(t, dir)
	if len(before) != 3 {
		t.Fatalf("pid files %v; want the master's and 2 workers'", before)
	}
	tc.Cmd.Process.Signal(syscall.SIGKILL)
	if !xtesting.Eventually(15*time.Second, func() bool {
		return !slices.ContainsFunc(old, clustertest.Alive)
	}) {
		t.Fatalf("the killed cluster's processes %v still run", old)
	}
	if got := pidFiles(t, dir); !slices.Equal(got, before) {
		t.Fatalf("pid files after kill -9: %v; want %v left (nothing to test)", got, before)
	}
	// A live process's pid file must stay.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	live := "worker." + strconv.Itoa(sleep.Process.Pid) + ".pid"
	if err := os.WriteFile(filepath.Join(dir, live), []byte(strconv.Itoa(sleep.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tc2 := startCluster(t, clustertest.EnvWorkers+"=2", clustertest.EnvPidDir+"="+dir)
	want := []string{live, "master." + strconv.Itoa(tc2.Cmd.Process.Pid) + ".pid"}
	for pid := range tc2.ActivePids() {
		want = append(want, "worker."+strconv.Itoa(pid)+".pid")
	}
	slices.Sort(want)
	if got := pidFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("pid files after the next start: %v; want %v (the dead pids' %v removed, the live one kept)", got, want, before)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("PidDir: %v; want it created with mode 0700", err)
		if err == nil {
			t.Errorf("PidDir mode %04o; want 0700", fi.Mode().Perm())
		}
	}
}

// TestListenRefusesUnsafePidDir: a PidDir others may write in (0777) is an
// error at Listen (master.ErrPidDir), before any worker starts.
func TestListenRefusesUnsafePidDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pids")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) // whatever the umask
	r := clustertest.Run(t, 20*time.Second, "cluster", clustertest.EnvWorkers+"=1", clustertest.EnvPidDir+"="+dir)
	if r.Code != 3 ||
		!strings.Contains(r.Stdout, "LISTEN-ERROR master: unsafe or unusable pid directory") ||
		!strings.Contains(r.Stdout, "mode 0777") {
		t.Fatalf("master with a 0777 PidDir: exit %d, output %q; want LISTEN-ERROR with master.ErrPidDir naming the mode", r.Code, r.Stdout)
	}
	if got := pidFiles(t, dir); len(got) != 0 {
		t.Errorf("files written in the refused PidDir: %v", got)
	}
}
