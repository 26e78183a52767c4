package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cluster2/cluster2/internal/safefs"
)

// Refusals of the run directory and of demo.json wrap errRunDir and
// safefs's sentinel; demo.json round-trips through writeState/readState.
func TestRunDirErrorsWrapSafefs(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if err := secureRunDir(open, true); !errors.Is(err, errRunDir) || !errors.Is(err, safefs.ErrUnsafeDir) {
		t.Errorf("secureRunDir(0777) = %v; want errRunDir and safefs.ErrUnsafeDir", err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := secureRunDir(dir, true); err != nil {
		t.Fatalf("secureRunDir(new) = %v", err)
	}
	want := state{Pid: 7, Addr: "a", Monitor: "m", Exe: "/x", Start: 9}
	if err := writeState(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := readState(dir); err != nil || got != want {
		t.Fatalf("readState = %+v, %v; want %+v", got, err, want)
	}
	os.Remove(filepath.Join(dir, "demo.json"))
	os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), filepath.Join(dir, "demo.json"))
	if _, err := readState(dir); !errors.Is(err, errRunDir) || !errors.Is(err, safefs.ErrUnsafeFile) {
		t.Errorf("readState with demo.json a symlink = %v; want errRunDir and safefs.ErrUnsafeFile", err)
	}
}
