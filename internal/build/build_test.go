package build_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/internal/xtesting"
	"github.com/cluster2/cluster2/shm"
)

// TestCompatible: the same layout is compatible; each region that differs
// is named, the first one when several do, with what to do.
func TestCompatible(t *testing.T) {
	l := build.Layout{Arena: 4, Supervision: 2, Emitter: 1, Cache: 3}
	if err := l.Compatible(l); err != nil {
		t.Fatalf("Compatible(itself) = %v", err)
	}
	for _, tc := range []struct {
		other build.Layout
		name  string
	}{
		{build.Layout{Arena: 5, Supervision: 2, Emitter: 1, Cache: 3}, "arena"},
		{build.Layout{Arena: 4, Supervision: 3, Emitter: 1, Cache: 3}, "supervision"},
		{build.Layout{Arena: 4, Supervision: 2, Emitter: 2, Cache: 3}, "emitter"},
		{build.Layout{Arena: 4, Supervision: 2, Emitter: 1, Cache: 4}, "cache"},
		{build.Layout{Arena: 4, Supervision: 9, Emitter: 1, Cache: 9}, "supervision"},
		{build.Layout{}, "arena"},
	} {
		err := l.Compatible(tc.other)
		want := fmt.Sprintf("the %s layout is version", tc.name)
		if !errors.Is(err, build.ErrLayoutMismatch) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "stop and start the cluster") {
			t.Errorf("Compatible(%v) = %v; want ErrLayoutMismatch naming %s and what to do", tc.other, err, tc.name)
		}
	}
	if s := l.String(); s != "arena 4 supervision 2 emitter 1 cache 3" {
		t.Errorf("String = %q", s)
	}
}

// TestRead: a process's Info has its toolchain and executable, and a
// version even when it names none.
func TestRead(t *testing.T) {
	i := build.Read("", build.Layout{Arena: 7})
	if i.Version == "" || i.Version != build.DefaultVersion() || i.GoVersion == "" || i.OS == "" || i.Arch == "" ||
		i.Path == "" || i.Layout.Arena != 7 {
		t.Fatalf("Read = %+v", i)
	}
	if i := build.Read("v9", build.Layout{}); i.Version != "v9" {
		t.Fatalf("Read(v9).Version = %q", i.Version)
	}
	if build.LayoutBump() != 0 {
		t.Fatalf("LayoutBump = %d in a build without the seam", build.LayoutBump())
	}
}

// TestLayoutBumpRefusedBothWays builds the helper testdata/arena with the
// linker's layout bump: it reports the bumped version, refuses the arena
// this (unbumped) process created, and this process refuses the one it
// created. So the seam changes what the binary speaks, not what it prints.
func TestLayoutBumpRefusedBothWays(t *testing.T) {
	if os.Getenv(xtesting.EnvNoChildren) != "" {
		t.Skipf("%s is set: no child processes", xtesting.EnvNoChildren)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the helper with")
	}
	bin := filepath.Join(t.TempDir(), "arena")
	out, err := exec.Command("go", "build", "-ldflags", "-X github.com/cluster2/cluster2/internal/build.layoutBump=1",
		"-o", bin, "./testdata/arena").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Unbumped arena, bumped opener.
	a, err := shm.Create(shm.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cmd := exec.Command(bin, "open")
	cmd.ExtraFiles = []*os.File{a.File()}
	out, err = cmd.Output()
	if err == nil || !strings.Contains(string(out), shm.ErrLayoutVersion.Error()) {
		t.Fatalf("the bumped binary opening a version-%d arena: %v, %q; want it refused (%v)", shm.Version(), err, out, shm.ErrLayoutVersion)
	}

	// Bumped arena, unbumped opener (this process).
	cmd = exec.Command(bin, "create")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var v uint32
	var fd int
	if _, err := fmt.Sscanf(line, "version %d fd %d", &v, &fd); err != nil || v != shm.LayoutVersion+1 {
		t.Fatalf("bumped helper says %q (%v); want version %d", line, err, shm.LayoutVersion+1)
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", cmd.Process.Pid, fd), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := shm.Open(f); !errors.Is(err, shm.ErrLayoutVersion) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("opening the bumped binary's arena: %v; want ErrLayoutVersion", err)
	}
}
