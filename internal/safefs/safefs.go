package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Flags select what CheckDir and PrepareDir allow.
type Flags uint

const (
	// Parents makes PrepareDir create the missing parents too (0700).
	Parents Flags = 1 << iota
	// FollowLink accepts a path that is a symlink to a safe directory (the
	// directory checked is the link's target).
	FollowLink
)

// CheckDir returns nil if path is a directory owned by this process's
// effective user that its group and others may not write in, and not a
// symlink (unless flags has FollowLink); otherwise an error wrapping
// ErrUnsafeDir that names path and its mode, or the error of stat.
func CheckDir(path string, flags Flags) error {
	stat := os.Lstat
	if flags&FollowLink != 0 {
		stat = os.Stat
	}
	fi, err := stat(path)
	if err != nil {
		return err
	}
	mode := fi.Mode()
	switch st, ok := fi.Sys().(*syscall.Stat_t); {
	case mode&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink", ErrUnsafeDir, path)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory (mode %v)", ErrUnsafeDir, path, mode)
	case !ok:
		return fmt.Errorf("%w: %s: no owner known (mode %v)", ErrUnsafeDir, path, mode)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%w: %s (mode %v) is owned by uid %d, not by this user (uid %d)", ErrUnsafeDir, path, mode, st.Uid, os.Geteuid())
	case mode.Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o (%v): other users may plant files in it (chmod go-w %s)",
			ErrUnsafeDir, path, mode.Perm(), mode, path)
	}
	return nil
}

// PrepareDir creates path (mode 0700, and with Parents its missing parents)
// if it does not exist, then checks it (CheckDir with flags).
func PrepareDir(path string, flags Flags) error {
	var err error
	if flags&Parents != 0 {
		err = os.MkdirAll(path, 0o700)
	} else if err = os.Mkdir(path, 0o700); errors.Is(err, fs.ErrExist) {
		err = nil
	}
	if err != nil {
		return err
	}
	return CheckDir(path, flags)
}

// OpenNoFollow is os.OpenFile with O_NOFOLLOW: when the last element of
// path is a symlink the open fails with an error wrapping both
// ErrUnsafeFile and the *fs.PathError (ELOOP), and the link is not followed.
func OpenNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%w: %s is a symlink (not followed): %w", ErrUnsafeFile, path, err)
	}
	return f, err
}

// CheckOwnedFile returns nil if f is a regular file owned by this process's
// effective user, otherwise an error wrapping ErrUnsafeFile.
func CheckOwnedFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s (mode %v) is not a regular file of this user", ErrUnsafeFile, f.Name(), fi.Mode())
	}
	return nil
}

// TempName is the name of the temporary file WriteFileAtomic writes name
// through: "." + name + ".tmp".
func TempName(name string) string { return "." + name + ".tmp" }

// WriteFileAtomic writes data to dir/name: to a new file dir/TempName(name)
// (O_CREAT|O_EXCL|O_NOFOLLOW, mode perm), renamed over name. A symlink
// planted as name is replaced, never followed; a reader sees the whole old
// file or the whole new one. A leftover temporary file (of a writer that was
// killed) is removed first, so writers of one name must not overlap (dir
// must be safe: CheckDir). Nothing is fsynced. On error the temporary file
// is removed and name is left as it was.
func WriteFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	tmp := filepath.Join(dir, TempName(name))
	os.Remove(tmp)
	f, err := OpenNoFollow(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
