// Package grpcserver is an example, not a library: a gRPC server
// (google.golang.org/grpc, with its health service) run as a cluster2
// cluster's workers through Config.Serve and Config.Drain. The whole example
// is the package's Example; its test runs that configuration as a real
// cluster and calls a method and the health check through a rolling restart.
//
// A program that does not import this package does not compile gRPC.
package grpcserver
