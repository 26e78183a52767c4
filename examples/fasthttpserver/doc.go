// Package fasthttpserver is an example, not a library: a fasthttp server
// (github.com/valyala/fasthttp) run as a cluster2 cluster's workers through
// Config.Serve and Config.Drain. The whole example is the package's Example;
// its test runs that configuration as a real cluster and calls it with
// net/http's and fasthttp's clients through a rolling restart.
//
// A program that does not import this package does not compile fasthttp.
package fasthttpserver
