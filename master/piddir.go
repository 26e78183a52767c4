package master

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cluster2/cluster2/internal/safefs"
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
//     refuses, with an error wrapping ErrPidDir (and safefs.ErrUnsafeDir)
//     and before anything else, a PidDir that is a symlink, not a
//     directory, not owned by the master's effective user, or writable by
//     group or others (an existing 0755 directory is accepted). Only PidDir
//     itself is checked, not its parents. (Package internal/safefs owns
//     these checks for the whole module.)
//   - A pid file is written to a new file (O_CREAT|O_EXCL|O_NOFOLLOW) and
//     renamed over its name (safefs.WriteFileAtomic): a symlink planted as
//     the pid file is replaced, never followed; a reader sees the whole
//     file or none.
//
// Crashes: a master killed with SIGKILL (or a machine crash) leaves its pid
// file and its workers'. Start, before writing its own, removes from PidDir
// the pid files (and temporary files) whose pid is not a live process: gone,
// or a zombie. A live pid's file stays, whoever runs under that pid now (a
// reused pid leaves a stale file, never removes a live one's), so two
// clusters may share a PidDir: neither removes the other's files while it
// runs.

// preparePidDir creates dir (0700, and missing parents) if needed and
// checks that it is a directory of this user that no one else may write in
// (safefs.PrepareDir); its errors wrap ErrPidDir (and, for an unsafe
// directory, safefs.ErrUnsafeDir).
func preparePidDir(dir string) error {
	if err := safefs.PrepareDir(dir, safefs.Parents); err != nil {
		return fmt.Errorf("%w: %w", ErrPidDir, err) // err names dir
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

// writePidFile writes dir/name through a new file renamed over it
// (safefs.WriteFileAtomic: its temporary file is .<name>.tmp, which
// parsePidFile knows).
func writePidFile(dir, name string, pid int) error {
	return safefs.WriteFileAtomic(dir, name, []byte(strconv.Itoa(pid)+"\n"), 0o644)
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
