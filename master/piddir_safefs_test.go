package master

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cluster2/cluster2/internal/safefs"
)

// An unsafe PidDir's error wraps both ErrPidDir and safefs.ErrUnsafeDir; one
// that cannot be created wraps ErrPidDir only.
func TestPidDirErrorsWrapSafefs(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if err := preparePidDir(open); !errors.Is(err, ErrPidDir) || !errors.Is(err, safefs.ErrUnsafeDir) {
		t.Errorf("preparePidDir(0777) = %v; want ErrPidDir and safefs.ErrUnsafeDir", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	err := preparePidDir(filepath.Join(file, "pids"))
	if !errors.Is(err, ErrPidDir) || errors.Is(err, safefs.ErrUnsafeDir) {
		t.Errorf("preparePidDir(under a file) = %v; want ErrPidDir, not safefs.ErrUnsafeDir", err)
	}
	// The temporary file WriteFileAtomic leaves behind a killed master is
	// one parsePidFile knows (Start removes it when its pid is dead).
	if pid, ok := parsePidFile(safefs.TempName(pidFileName("worker", 42))); !ok || pid != 42 {
		t.Errorf("parsePidFile(%s) = %d, %v; want 42, true", safefs.TempName(pidFileName("worker", 42)), pid, ok)
	}
}
