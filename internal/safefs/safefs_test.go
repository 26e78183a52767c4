package safefs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cluster2/cluster2/internal/safefs"
)

// foreign chowns path to uid 65534 (we are root in CI), or skips.
func foreign(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}

// Every kind of unsafe directory is refused with ErrUnsafeDir naming it;
// a 0700 and a 0755 directory of ours are accepted.
func TestCheckDir(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	mine := mk("mine", 0o700)
	shared := mk("shared", 0o755)
	link := filepath.Join(base, "link")
	os.Symlink(mine, link)
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	theirs := mk("theirs", 0o700)
	foreign(t, theirs)

	for _, ok := range []string{mine, shared} {
		if err := safefs.CheckDir(ok, 0); err != nil {
			t.Errorf("CheckDir(%s) = %v; want nil", filepath.Base(ok), err)
		}
	}
	for _, c := range []struct {
		path, want string
		flags      safefs.Flags
	}{
		{mk("all", 0o777), "mode 0777 (drwxrwxrwx)", 0},
		{mk("group", 0o770), "mode 0770", 0},
		{mk("others", 0o702), "mode 0702", 0},
		{link, "is a symlink", 0},
		{file, "is not a directory", 0},
		{file, "is not a directory", safefs.FollowLink},
		{theirs, "owned by uid 65534", 0},
		{theirs, "owned by uid 65534", safefs.FollowLink},
	} {
		err := safefs.CheckDir(c.path, c.flags)
		if !errors.Is(err, safefs.ErrUnsafeDir) || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckDir(%s, %d) = %v; want ErrUnsafeDir saying %q", filepath.Base(c.path), c.flags, err, c.want)
		}
	}
	// FollowLink checks the link's target: ours is accepted, a 0777 or
	// foreign one is not.
	if err := safefs.CheckDir(link, safefs.FollowLink); err != nil {
		t.Errorf("CheckDir(a link to our 0700 dir, FollowLink) = %v; want nil", err)
	}
	open := mk("open", 0o777)
	linkOpen := filepath.Join(base, "link-open")
	os.Symlink(open, linkOpen)
	linkTheirs := filepath.Join(base, "link-theirs")
	os.Symlink(theirs, linkTheirs)
	for _, l := range []string{linkOpen, linkTheirs} {
		if err := safefs.CheckDir(l, safefs.FollowLink); !errors.Is(err, safefs.ErrUnsafeDir) {
			t.Errorf("CheckDir(%s, FollowLink) = %v; want ErrUnsafeDir", filepath.Base(l), err)
		}
	}
	if err := safefs.CheckDir(filepath.Join(base, "missing"), 0); !errors.Is(err, os.ErrNotExist) || errors.Is(err, safefs.ErrUnsafeDir) {
		t.Errorf("CheckDir(missing) = %v; want ErrNotExist, not ErrUnsafeDir", err)
	}
}

// PrepareDir creates 0700 directories (parents with Parents only), accepts
// an existing safe one and refuses an existing unsafe one.
func TestPrepareDir(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "a", "b")
	if err := safefs.PrepareDir(deep, 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PrepareDir(a/b) without Parents = %v; want ErrNotExist", err)
	}
	if err := safefs.PrepareDir(deep, safefs.Parents); err != nil {
		t.Fatalf("PrepareDir(a/b, Parents) = %v", err)
	}
	for _, p := range []string{filepath.Join(base, "a"), deep} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", p, fi.Mode(), err)
		}
	}
	if err := safefs.PrepareDir(deep, 0); err != nil {
		t.Errorf("PrepareDir(existing) = %v; want nil", err)
	}
	os.Chmod(deep, 0o777)
	if err := safefs.PrepareDir(deep, safefs.Parents); !errors.Is(err, safefs.ErrUnsafeDir) {
		t.Errorf("PrepareDir(existing 0777) = %v; want ErrUnsafeDir", err)
	}
	link := filepath.Join(base, "link")
	os.Symlink(filepath.Join(base, "a"), link)
	if err := safefs.PrepareDir(link, 0); !errors.Is(err, safefs.ErrUnsafeDir) {
		t.Errorf("PrepareDir(a symlink) = %v; want ErrUnsafeDir", err)
	}
	if err := safefs.PrepareDir(link, safefs.Parents|safefs.FollowLink); err != nil {
		t.Errorf("PrepareDir(a symlink to a safe dir, FollowLink) = %v; want nil", err)
	}
}

// A symlink planted as a file is refused by OpenNoFollow and replaced by
// WriteFileAtomic; its target is untouched either way.
func TestPlantedSymlinkFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "someone-elses")
	precious := []byte("precious")
	os.WriteFile(target, precious, 0o600)
	name := filepath.Join(dir, "state")
	os.Symlink(target, name)

	for _, flag := range []int{os.O_RDONLY, os.O_RDWR | os.O_TRUNC, os.O_WRONLY | os.O_CREATE} {
		f, err := safefs.OpenNoFollow(name, flag, 0o600)
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, safefs.ErrUnsafeFile) || !errors.Is(err, syscall.ELOOP) {
			t.Errorf("OpenNoFollow(a symlink, %#x) = %v; want ErrUnsafeFile and ELOOP", flag, err)
		}
	}
	// A leftover temporary file is replaced too.
	os.WriteFile(filepath.Join(dir, safefs.TempName("state")), []byte("left by a killed writer"), 0o600)
	if err := safefs.WriteFileAtomic(dir, "state", []byte("new"), 0o640); err != nil {
		t.Fatalf("WriteFileAtomic over a planted symlink: %v", err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, precious) {
		t.Errorf("the link's target holds %q; want it untouched", b)
	}
	fi, err := os.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
		t.Fatalf("state after WriteFileAtomic: %v, %v; want a regular 0640 file", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(name); string(b) != "new" {
		t.Errorf("state holds %q; want %q", b, "new")
	}
	if _, err := os.Lstat(filepath.Join(dir, safefs.TempName("state"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
	f, err := safefs.OpenNoFollow(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := safefs.CheckOwnedFile(f); err != nil {
		t.Errorf("CheckOwnedFile(ours) = %v", err)
	}
}

// A temporary file name planted as a symlink is not followed: the write
// fails, the target is untouched, nothing is renamed. (The writer removes
// a leftover first, so the plant has to be a directory to survive.)
func TestWriteFileAtomicRefusesPlantedTemp(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state"), []byte("old"), 0o600)
	os.Mkdir(filepath.Join(dir, safefs.TempName("state")), 0o700)
	os.WriteFile(filepath.Join(dir, safefs.TempName("state"), "x"), nil, 0o600)
	if err := safefs.WriteFileAtomic(dir, "state", []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFileAtomic with a directory as its temporary file: nil; want an error")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "state")); string(b) != "old" {
		t.Errorf("state holds %q after a failed write; want %q", b, "old")
	}
}

// CheckOwnedFile refuses another user's file and a FIFO.
func TestCheckOwnedFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := safefs.OpenNoFollow(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := safefs.CheckOwnedFile(f); !errors.Is(err, safefs.ErrUnsafeFile) {
		t.Errorf("CheckOwnedFile(a fifo) = %v; want ErrUnsafeFile", err)
	}
	f.Close()
	theirs := filepath.Join(dir, "theirs")
	os.WriteFile(theirs, []byte("{}"), 0o644)
	foreign(t, theirs)
	if f, err = safefs.OpenNoFollow(theirs, os.O_RDONLY, 0); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := safefs.CheckOwnedFile(f); !errors.Is(err, safefs.ErrUnsafeFile) || !strings.Contains(err.Error(), theirs) {
		t.Errorf("CheckOwnedFile(uid 65534's file) = %v; want ErrUnsafeFile naming it", err)
	}
}
