package master

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cluster2/cluster2/shm"
)

// Pid files (Config.PidDir).
//
// Layout: PidDir holds master.<pid>.pid and worker.<pid>.pid, each the pid
// in decimal and a newline, and, only while one is being written,
// .<name>.tmp.
//
// Hostile users: a pid directory another user can write in lets that user
// plant a symlink named as the next pid file, and a master that follows it
// (as root, typically) overwrites whatever it points at. So:
//
//   - Start creates PidDir (and missing parents) with mode 0700, and
//     refuses, with an error wrapping ErrPidDir and before anything else, a
//     PidDir that is a symlink, not a directory, not owned by the master's
//     effective user, or writable by group or others (an existing 0755
//     directory is accepted). Only PidDir itself is checked, not its
//     parents.
//   - A pid file is written to a new file (O_CREAT|O_EXCL|O_NOFOLLOW) and
//     renamed over its name: a symlink planted as the pid file is replaced,
//     never followed; a reader sees the whole file or none.
//
// Crashes: a master killed with SIGKILL (or a machine crash) leaves its pid
// file and its workers'. Start, before writing its own, removes from PidDir
// the pid files (and temporary files) whose pid is not a live process: gone,
// or a zombie. A live pid's file stays, whoever runs under that pid now (a
// reused pid leaves a stale file, never removes a live one's), so two
// clusters may share a PidDir: neither removes the other's files while it
// runs.

// preparePidDir creates dir if needed and checks that it is a directory of
// this user that no one else may write in.
func preparePidDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPidDir, dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPidDir, dir, err)
	}
	switch st, ok := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink", ErrPidDir, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrPidDir, dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%w: %s is owned by uid %d, not by this user (%d)", ErrPidDir, dir, st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o: others may plant files in it (chmod 700 it)",
			ErrPidDir, dir, fi.Mode().Perm())
	}
	return nil
}

// pidFileName returns the pid file name of kind ("master", "worker") and pid.
func pidFileName(kind string, pid int) string { return kind + "." + strconv.Itoa(pid) + ".pid" }

// parsePidFile returns the pid a name of PidDir is for: a pid file, or the
// temporary file of one.
func parsePidFile(name string) (int, bool) {
	if t, ok := strings.CutPrefix(name, "."); ok {
		if name, ok = strings.CutSuffix(t, ".tmp"); !ok {
			return 0, false
		}
	}
	rest, ok := strings.CutPrefix(name, "master.")
	if !ok {
		if rest, ok = strings.CutPrefix(name, "worker."); !ok {
			return 0, false
		}
	}
	digits, ok := strings.CutSuffix(rest, ".pid")
	pid, err := strconv.Atoi(digits)
	if !ok || err != nil || pid <= 0 || strconv.Itoa(pid) != digits {
		return 0, false
	}
	return pid, true
}

// writePidFile writes dir/name through a new file renamed over it.
func writePidFile(dir, name string, pid int) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	os.Remove(tmp) // a leftover of a killed master: ours (dir is checked)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(pid) + "\n")
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

// removeStalePidFiles removes the pid files of dir whose pid is not a live
// process (shm.ProcessAlive: gone or a zombie, on proof only), and returns
// their names.
func removeStalePidFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		pid, ok := parsePidFile(e.Name())
		if !ok || shm.ProcessAlive(pid, 0) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed, nil
}
