package cluster2_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/xtesting"
)

// TestCheck runs real programs in check mode: this test binary's cluster
// child answers its build; every other kind of program fails the check
// with ErrCheckFailed and the reason.
func TestCheck(t *testing.T) {
	if os.Getenv(xtesting.EnvNoChildren) != "" {
		t.Skipf("%s is set: no child processes", xtesting.EnvNoChildren)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	env := append(os.Environ(), xtesting.EnvChild+"=cluster")
	info, err := cluster2.Check(ctx, os.Args[0], []string{os.Args[0], "-test.run=^$"}, env)
	if err != nil {
		t.Fatalf("Check(this test binary's cluster) = %v", err)
	}
	if info.Layout != cluster2.ThisLayout() || info.Version == "" || info.Path == "" {
		t.Fatalf("Check's info = %+v; want this build's", info)
	}

	dir := t.TempDir()
	script := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := `{"version":"x","os":"linux","arch":"` + info.Arch + `","layout":{"arena":1,"supervision":2}}`
	for _, tc := range []struct {
		name, exe, why string
		is             error
	}{
		{"missing", filepath.Join(dir, "none"), "the file is missing", syscall.ENOENT},
		{"not executable", script("plain", "x\n", 0o644), "the file is not executable", syscall.EACCES},
		{"exits 3", script("exit3", "#!/bin/sh\necho something went wrong >&2\nexit 3\n", 0o755), "exit status 3; its stderr ends: something went wrong", nil},
		{"no build info", script("true", "#!/bin/sh\nexit 0\n", 0o755), "without its build's information", nil},
		{"bad build info", script("bad", "#!/bin/sh\necho '{' >&3\n", 0o755), "its build's information", nil},
		{"another layout", script("layout", "#!/bin/sh\necho '"+other+"' >&3\n", 0o755), "the arena layout is version", cluster2.ErrLayoutMismatch},
		{"another os", script("os", "#!/bin/sh\necho '{\"os\":\"plan9\",\"arch\":\"386\"}' >&3\n", 0o755), "another architecture", nil},
	} {
		_, err := cluster2.Check(ctx, tc.exe, nil, nil)
		if !errors.Is(err, cluster2.ErrCheckFailed) || !strings.Contains(err.Error(), tc.why) || tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: Check = %v; want ErrCheckFailed saying %q (and %v)", tc.name, err, tc.why, tc.is)
		}
	}

	// One that answers and leaves a process holding the pipe: the answer
	// counts, the process is killed (its group), the check ends.
	lj, _ := json.Marshal(cluster2.ThisLayout())
	good := `{"version":"v9","os":"` + info.OS + `","arch":"` + info.Arch + `","layout":` + string(lj) + `}`
	start := time.Now()
	got, err := cluster2.Check(ctx, script("leaves", "#!/bin/sh\necho '"+good+"' >&3\nsleep 60 &\nexit 0\n", 0o755), nil, nil)
	if err != nil || got.Version != "v9" || time.Since(start) > 10*time.Second {
		t.Errorf("Check(a program that answers and leaves a process behind) = %+v, %v after %v; want v9, soon", got, err, time.Since(start))
	}

	// One that never answers is killed when ctx ends, its process group too.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	start = time.Now()
	_, err = cluster2.Check(short, script("hang", "#!/bin/sh\nsleep 60 &\nsleep 60\n", 0o755), nil, nil)
	if !errors.Is(err, cluster2.ErrCheckFailed) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Errorf("Check(a program that hangs) = %v after %v; want ErrCheckFailed, DeadlineExceeded, soon", err, time.Since(start))
	}
}
