package grpcserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"grpc": func() { clustertest.ServeConfig(config("127.0.0.1:0")) }})
}

// dial returns a client of the cluster (one HTTP/2 connection, to whichever
// worker accepts it).
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// call calls the method and the health check on conn and returns the pid
// that served the method.
func call(conn *grpc.ClientConn) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pid wrapperspb.Int64Value
	if err := conn.Invoke(ctx, pidMethod, &emptypb.Empty{}, &pid); err != nil {
		return 0, fmt.Errorf("Pid: %w", err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: workerService.ServiceName})
	if err != nil {
		return 0, fmt.Errorf("health: %w", err)
	}
	if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return 0, fmt.Errorf("health: %v", h.GetStatus())
	}
	return int(pid.GetValue()), nil
}

// TestGRPCThroughARollingRestart runs the example as a real cluster and
// calls it with gRPC clients: the method and the health check answer from
// the workers; under calls on kept connections (4 clients) and on a new
// connection per call (2 clients), a rolling restart replaces both workers
// with 0 failed calls; the new workers answer, and the monitor counts the
// calls the interceptor told CountRequest about.
func TestGRPCThroughARollingRestart(t *testing.T) {
	p := clustertest.Start(t, "grpc")
	before := p.ActivePids()
	conn, err := dial(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if pid, err := call(conn); err != nil || !before[pid] {
		t.Fatalf("call: pid %d, %v; want one of the workers %v", pid, err, before)
	}

	p.RollingRestartUnder(before, 60*time.Second, clustertest.NamedLoad{
		Name: "4 gRPC clients, kept connections",
		Start: func(stop <-chan struct{}) (*clustertest.Counts, *sync.WaitGroup) {
			return clustertest.Loop(4, stop, func() (*grpc.ClientConn, func()) {
				c, err := dial(p.Addr) // as the test's own dial, which worked
				if err != nil {
					panic(err)
				}
				return c, func() { c.Close() }
			}, func(c *grpc.ClientConn) error { _, err := call(c); return err })
		},
	}, clustertest.NamedLoad{
		Name: "2 gRPC clients, a new connection per call",
		Start: func(stop <-chan struct{}) (*clustertest.Counts, *sync.WaitGroup) {
			return clustertest.Loop(2, stop, func() (string, func()) { return p.Addr, nil }, func(addr string) error {
				c, err := dial(addr)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = call(c)
				return err
			})
		},
	})

	now := p.ActivePids()
	if pid, err := call(conn); err != nil || !now[pid] {
		t.Fatalf("after the rolling restart: pid %d, %v; want one of the new workers %v", pid, err, now)
	}
	if ok, _, samples := p.WaitMetric("cluster2_worker_requests_total", now, 1, 30*time.Second); !ok {
		t.Fatalf("/metrics counts no call of the new workers %v:\n%s", now, samples)
	}
}
