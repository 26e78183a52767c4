package master

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestPidFileReplacesPlantedSymlink: a symlink planted as the next pid file,
// pointing at a file we own, is replaced by the pid file; the file it
// pointed at is untouched (the old writer followed it and overwrote it).
func TestPidFileReplacesPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(victim, []byte("precious data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"master", "worker"} {
		link := filepath.Join(dir, pidFileName(kind, 4242))
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		m := &Master{cfg: Config{PidDir: dir}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if err := m.writePid(kind, 4242); err != nil {
			t.Fatalf("writePid(%s): %v", kind, err)
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious data\n" {
			t.Fatalf("the symlink's target was overwritten: %q", b)
		}
		fi, err := os.Lstat(link)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: %v, %v; want a regular file in place of the symlink", link, fi, err)
		}
		if b, _ := os.ReadFile(link); string(b) != "4242\n" {
			t.Fatalf("pid file %q; want 4242", b)
		}
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"master.4242.pid", "worker.4242.pid"}) {
		t.Fatalf("pid dir holds %v; want the two pid files only (no temporary file left)", names)
	}
}

// TestUnsafePidDirRefused: a PidDir writable by others, a symlink, a file,
// or another user's directory is refused with ErrPidDir; a missing one is
// created 0700 and an existing 0755 one is accepted.
func TestUnsafePidDirRefused(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777) // whatever the umask
	group := filepath.Join(base, "group")
	os.Mkdir(group, 0o770)
	os.Chmod(group, 0o770)
	link := filepath.Join(base, "link")
	os.Symlink(t.TempDir(), link)
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	for _, dir := range []string{open, group, link, file} {
		if err := preparePidDir(dir); !errors.Is(err, ErrPidDir) {
			t.Errorf("preparePidDir(%s) = %v; want ErrPidDir", filepath.Base(dir), err)
		}
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := preparePidDir(other); !errors.Is(err, ErrPidDir) {
			t.Errorf("preparePidDir(a directory of uid 65534) = %v; want ErrPidDir", err)
		}
	} else {
		t.Log("not root: the other user's directory case is not run")
	}

	fresh := filepath.Join(base, "a", "pids")
	if err := preparePidDir(fresh); err != nil {
		t.Fatalf("preparePidDir(missing): %v", err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %04o; want 0700", fi.Mode().Perm())
	}
	shared := filepath.Join(base, "shared")
	os.Mkdir(shared, 0o755)
	os.Chmod(shared, 0o755)
	if err := preparePidDir(shared); err != nil {
		t.Errorf("preparePidDir(0755 dir): %v; want accepted", err)
	}
}

// TestStalePidFilesRemoved: the files of dead pids (a reaped child's) go,
// a live pid's (this process's) stays, and names that are not pid files
// are left alone.
func TestStalePidFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	d, me := dead.Process.Pid, os.Getpid()
	for _, name := range []string{pidFileName("master", d), pidFileName("worker", d), "." + pidFileName("worker", d) + ".tmp",
		pidFileName("worker", me), "notes.txt", "worker.007.pid"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	removed, err := removeStalePidFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Errorf("removed %v; want the dead pid %d's 3 files", removed, d)
	}
	want := []string{"notes.txt", "worker.007.pid", "worker." + strconv.Itoa(me) + ".pid"}
	slices.Sort(want)
	if names := dirNames(t, dir); !slices.Equal(names, want) {
		t.Errorf("left %v; want %v", names, want)
	}
}

func dirNames(t *testing.T, dir string) []string {
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
