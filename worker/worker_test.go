package worker_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/worker"
)

func TestRunOutsideACluster(t *testing.T) {
	_, err := worker.Run(context.Background(), worker.Config{Handler: http.NotFoundHandler()})
	if !errors.Is(err, worker.ErrNotWorker) {
		t.Fatalf("Run in a plain process: %v; want ErrNotWorker", err)
	}
	if worker.IsWorker() {
		t.Fatalf("IsWorker in a plain process: true")
	}
}

// TestRunWithMalformedSlot re-executes the test binary with a malformed
// slot variable: the worker package reads the environment when the program
// starts (Run removes the variables later), so a variable set by the test
// itself would not be seen.
func TestRunWithMalformedSlot(t *testing.T) {
	if os.Getenv(proc.EnvSlot) == "x" && os.Getenv(proc.EnvRole) == "worker" {
		_, err := worker.Run(context.Background(), worker.Config{Handler: http.NotFoundHandler()})
		if !errors.Is(err, worker.ErrNotWorker) {
			t.Fatalf("Run with %s=x: %v; want ErrNotWorker", proc.EnvSlot, err)
		}
		if !strings.Contains(err.Error(), proc.EnvSlot+`="x" is not a slot`) {
			t.Fatalf("Run with %s=x: %v; want the malformed slot named", proc.EnvSlot, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunWithMalformedSlot$", "-test.v")
	cmd.Env = append(os.Environ(), proc.EnvRole+"=worker", proc.EnvSlot+"=x")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child with %s=x: %v\n%s", proc.EnvSlot, err, out)
	}
}
