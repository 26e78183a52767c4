package persist_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cluster2/cluster2/internal/safefs"
	"github.com/cluster2/cluster2/persist"
)

// The data directory may be a symlink to a safe directory (the link is
// followed, its target checked); its wal subdirectory may not. A refusal
// wraps persist.ErrUnsafeDir and safefs.ErrUnsafeDir.
func TestDataDirectoryLinks(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	os.Mkdir(target, 0o700)
	link := filepath.Join(base, "link")
	os.Symlink(target, link)
	m, err := persist.Open(link, persist.Options{Logger: quiet()})
	if err != nil {
		t.Fatalf("Open of a symlink to a 0700 directory: %v; want it opened", err)
	}
	m.Close()

	os.Chmod(target, 0o777)
	_, err = persist.Open(link, persist.Options{Logger: quiet()})
	if !errors.Is(err, persist.ErrUnsafeDir) || !errors.Is(err, safefs.ErrUnsafeDir) {
		t.Fatalf("Open of a symlink to a 0777 directory = %v; want persist.ErrUnsafeDir and safefs.ErrUnsafeDir", err)
	}
	os.Chmod(target, 0o700)

	wal := filepath.Join(target, "wal")
	other := filepath.Join(base, "other-wal")
	os.Rename(wal, other)
	os.Symlink(other, wal)
	_, err = persist.Open(target, persist.Options{Logger: quiet()})
	if !errors.Is(err, persist.ErrUnsafeDir) || !errors.Is(err, safefs.ErrUnsafeDir) {
		t.Fatalf("Open with wal a symlink = %v; want persist.ErrUnsafeDir and safefs.ErrUnsafeDir", err)
	}
}
