package grpcserver_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// pidMethod is the one method of the example's service: it answers the
// serving worker's pid.
const pidMethod = "/cluster2.example.Worker/Pid"

// workerService is what protoc-gen-go-grpc generates for
//
//	service Worker { rpc Pid(google.protobuf.Empty) returns (google.protobuf.Int64Value); }
//
// written by hand so that the example needs no generated code.
var workerService = grpc.ServiceDesc{
	ServiceName: "cluster2.example.Worker",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Pid",
		Handler: func(srv any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			pid := func(context.Context, any) (any, error) { return wrapperspb.Int64(int64(os.Getpid())), nil }
			if intercept == nil {
				return pid(ctx, in)
			}
			return intercept(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: pidMethod}, pid)
		},
	}},
}

// countRequests counts every unary call in the worker's heartbeat (the
// monitor's request metrics), which cannot see inside gRPC by itself.
func countRequests(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	t := time.Now()
	resp, err := next(ctx, req)
	cluster2.CountRequest(time.Since(t), false)
	return resp, err
}

// config serves gRPC on addr in every worker. The same main runs in the
// master, where the server is made but never served.
func config(addr string) cluster2.Config {
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(countRequests))
	g.RegisterService(&workerService, struct{}{})
	// The health service answers SERVING for the whole server ("") and for
	// the service. A draining worker does not say NOT_SERVING: the address
	// is the cluster's, which keeps serving; its connections get GOAWAY
	// (GracefulStop) and the clients reconnect, to another worker.
	hs := health.NewServer()
	hs.SetServingStatus(workerService.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	return cluster2.Config{
		Addr: addr,
		// Serve returns once the worker closes ln (warm-up over, pause,
		// drain): grpc.Server.Serve may be called again with another one.
		Serve: func(_ context.Context, ln net.Listener) error { return g.Serve(ln) },
		// Drain lets the calls in flight finish (GOAWAY on every connection),
		// and cuts them when the drain's deadline passes.
		Drain: func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				g.Stop()
				return ctx.Err()
			}
		},
		// WarmUp calls the worker's own server on its private address before
		// it joins the shared socket: the health check, then the method.
		WarmUp: func(ctx context.Context, addr string) error {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer conn.Close()
			h, err := healthpb.NewHealthClient(conn).Check(ctx,
				&healthpb.HealthCheckRequest{Service: workerService.ServiceName}, grpc.WaitForReady(true))
			if err != nil {
				return err
			}
			if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("health: %v", h.GetStatus())
			}
			return conn.Invoke(ctx, pidMethod, &emptypb.Empty{}, new(wrapperspb.Int64Value))
		},
	}
}

// Example runs a gRPC server as the workers of a cluster: the whole main of
// the program. (Compile-only: it re-executes the binary.)
func Example() {
	cfg := config(":50051")
	cfg.Workers = 2
	c, err := cluster2.Listen(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%v up", c) // master: every worker serves gRPC, warmed up
	c.Wait()               // SIGHUP: a rolling restart; SIGTERM: a graceful stop
}
