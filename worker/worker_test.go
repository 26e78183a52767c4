package worker_test

import (
	"context"
	"errors"
	"net/http"
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

func TestRunWithMalformedSlot(t *testing.T) {
	t.Setenv(proc.EnvSlot, "x")
	_, err := worker.Run(context.Background(), worker.Config{Handler: http.NotFoundHandler()})
	if !errors.Is(err, worker.ErrNotWorker) {
		t.Fatalf("Run with %s=x: %v; want ErrNotWorker", proc.EnvSlot, err)
	}
}
