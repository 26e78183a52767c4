package persist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cluster2/cluster2/internal/safefs"
)

// openFile opens a file of the data directory without following a symbolic
// link in its last element (safefs.OpenNoFollow): a link planted in the
// directory (pointing at a file of someone else's) makes the open fail with
// ELOOP (and safefs.ErrUnsafeFile) instead of making us read, truncate or
// overwrite its target.
func openFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	return safefs.OpenNoFollow(path, flag, perm)
}

// readFile reads a file of the data directory (O_NOFOLLOW).
func readFile(path string) ([]byte, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// truncateFile cuts a file of the data directory to size (O_NOFOLLOW, where
// os.Truncate follows links).
func truncateFile(path string, size int64) error {
	f, err := openFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// prepareDir creates the directory path (0700, with its missing parents if
// parents) and refuses, with an error wrapping ErrUnsafeDir and
// safefs.ErrUnsafeDir, one that another user could change: not owned by us,
// writable by its group or by others, or (with mustNotLink) a link. Such a
// user could plant or swap files under the log writer (see openFile).
func prepareDir(path string, parents, mustNotLink bool) error {
	var flags safefs.Flags
	if parents {
		flags |= safefs.Parents
	}
	if !mustNotLink {
		flags |= safefs.FollowLink
	}
	err := safefs.PrepareDir(path, flags)
	if errors.Is(err, safefs.ErrUnsafeDir) {
		return fmt.Errorf("%w: %w", ErrUnsafeDir, err)
	}
	if err != nil {
		return fmt.Errorf("persist: data directory: %w", err)
	}
	return nil
}

// lockDir takes the data directory's lock: an exclusive flock on DIR/lock,
// which holds the pid of its holder. The kernel releases a flock when the
// holder's descriptor is closed, by Close or by the holder's death (kill -9
// included), so a stale lock never outlives its process. A second process
// (or a second Open in this one) fails at once with ErrLocked and the pid.
// prev is what the file held before (nil if it did not exist or was
// empty): its first line is the last holder's pid, a second line a note
// (see lockUpgrading). The previous release made no lock file, so a
// non-empty one is a trace of this one (see LogWriter.legacy).
func lockDir(dir string) (f *os.File, prev []byte, err error) {
	path := filepath.Join(dir, "lock")
	f, err = openFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("persist: lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid, _, _ := bytes.Cut(b, []byte("\n"))
			pids := string(bytes.TrimSpace(pid))
			if _, perr := strconv.Atoi(pids); perr != nil {
				pids = "unknown"
			}
			return nil, nil, fmt.Errorf("%w: %s is held by pid %s (another master or cache manager uses this data directory)", ErrLocked, path, pids)
		}
		return nil, nil, fmt.Errorf("persist: lock %s: %w", path, err)
	}
	prev, err = io.ReadAll(io.LimitReader(f, 256))
	if len(prev) == 0 {
		prev = nil
	}
	if err == nil {
		err = writeLock(f, "")
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("persist: lock %s: %w", path, err)
	}
	return f, prev, nil
}

// lockUpgrading is the note the lock file carries while a directory of the
// previous release is being upgraded (from the moment Open takes it for one
// until its checkpoint is durable): an Open that fails or dies meanwhile
// leaves it, and the next Open takes the directory as the previous
// release's again instead of as a new one that lost its checkpoint.
const lockUpgrading = "upgrading a directory written before checkpoints"

// writeLock makes the lock file hold our pid and, if note is not empty, a
// second line; a note is fdatasynced (it must outlast a crash).
func writeLock(f *os.File, note string) error {
	s := strconv.Itoa(os.Getpid()) + "\n"
	if note != "" {
		s += note + "\n"
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(s), 0); err != nil {
		return err
	}
	if note != "" {
		return fdatasync(f)
	}
	return nil
}

// salvageDir is where recovery moves what it drops (DIR/salvaged-<time>/),
// created on first use: nothing recovery removes from the log is deleted.
type salvageDir struct {
	dir  string // the data directory
	path string // "" until created
}

// keep moves the file at path into the salvage directory.
func (s *salvageDir) keep(path string) (string, error) {
	if err := s.create(); err != nil {
		return "", err
	}
	to := filepath.Join(s.path, filepath.Base(path))
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("persist: salvage: move %s: %w", path, err)
	}
	if err := syncDir(s.path); err != nil {
		return "", err
	}
	return to, syncDir(filepath.Dir(path))
}

// keepTail copies the bytes of the file at path from off to its last
// non-zero byte into the salvage directory (as NAME.from-OFF), if there are
// any; the caller then cuts the file at off.
func (s *salvageDir) keepTail(path string, off int64) (string, error) {
	end, err := dataEnd(path)
	if err != nil || end <= off {
		return "", err
	}
	if err := s.create(); err != nil {
		return "", err
	}
	src, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return "", err
	}
	defer src.Close()
	to := filepath.Join(s.path, fmt.Sprintf("%s.from-%d", filepath.Base(path), off))
	dst, err := openFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(dst, io.NewSectionReader(src, off, end-off))
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(s.path)
	}
	if err != nil {
		return "", fmt.Errorf("persist: salvage: keep the tail of %s: %w", path, err)
	}
	return to, nil
}

func (s *salvageDir) create() error {
	if s.path != "" {
		return nil
	}
	p := filepath.Join(s.dir, "salvaged-"+time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Mkdir(p, 0o700); err != nil {
		return fmt.Errorf("persist: salvage: %w", err)
	}
	s.path = p
	return syncDir(s.dir)
}
