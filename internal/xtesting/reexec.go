// Package xtesting runs multi-process tests: the test binary re-executes
// itself as a child that runs one named function instead of the tests.
package xtesting

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// EnvChild names the child function a re-executed test binary runs.
const EnvChild = "CLUSTER2_TEST_CHILD"

// EnvNoChildren, when set, makes Command skip the test: .ci/run sets it to
// run the single-process tests of the smaller packages for arm64 under
// qemu-user, where multi-process tests cannot run.
const EnvNoChildren = "CLUSTER2_TEST_NO_CHILDREN"

// Main is TestMain's body for packages with child processes: in a child it
// runs the function its name selects and exits (0 on return; 97 for an unknown
// name); in the parent it runs the tests.
func Main(m *testing.M, children map[string]func()) {
	if name := os.Getenv(EnvChild); name != "" {
		fn, ok := children[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "xtesting: unknown child %q\n", name)
			os.Exit(97)
		}
		fn()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// IsChild reports whether this process is a re-executed child.
func IsChild() bool { return os.Getenv(EnvChild) != "" }

// Command returns a command that re-executes the test binary as child name,
// with files as descriptors 3, 4, … and env added to the environment. Its
// stderr goes to the test's stderr. The child (and its process group) is
// killed with SIGKILL when the test ends; the test owns Wait (a child nobody
// waited for is reaped when the test binary exits).
func Command(tb testing.TB, name string, files []*os.File, env ...string) *exec.Cmd {
	tb.Helper()
	if os.Getenv(EnvNoChildren) != "" {
		tb.Skipf("%s is set: no child processes (under qemu-user without binfmt_misc an emulated binary cannot exec itself)", EnvNoChildren)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(append(os.Environ(), EnvChild+"="+name), env...)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tb.Cleanup(func() {
		// Not cmd.ProcessState: a goroutine of the test may be in Wait.
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return cmd
}

// Start starts cmd or fails the test.
func Start(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("xtesting: start child: %v", err)
	}
}

// Eventually polls cond every millisecond until it is true or timeout passes,
// and reports whether it became true.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}
