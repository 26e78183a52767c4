// Package worker is the worker side of a cluster2 cluster: a process the
// master re-executed serves HTTP (or the server of Config.Serve) on the
// inherited shared socket.
//
// Run maps the arena (fd 4), joins the slot the master chose, runs WarmUp
// against the worker's own handler on a private loopback listener, then
// accepts on a dup of the shared socket (fd 3). From then on it:
//
//   - counts every connection it accepts there and every request it
//     completes in its control block, where the master reads them live
//     (master.WorkerInfo.Accepts and Requests, /metrics);
//   - balances its accepts with the other workers': before an accept, a
//     worker that took more than its share of the last 100 ms of
//     connections (the listening workers' counts in their blocks) stands
//     back for up to 2 ms so that another takes it, no longer once the
//     others take nothing while clients wait in the socket's queue
//     (ServerConfig.UnbalancedAccepts turns it off; docs/runtime.md,
//     "Balanced accepts");
//   - publishes a Heartbeat every HeartbeatInterval in its control block
//     (pid, uptime, cpu and resident memory from gopsutil, connections,
//     requests and their duration in the cycle, requests/s, GC cycles and
//     pause time in the cycle from runtime/metrics, goroutines, errors);
//   - obeys the master's wants: pause (stop accepting; responses say
//     "Connection: close" and a connection idle for
//     ServerConfig.DrainIdleGrace is closed, as in a drain), resume, drain;
//   - drains in two phases on a dismissal or SIGTERM: its listener closed
//     (the socket's queue stays with the other workers) and every response
//     from then on with "Connection: close", Serve returned (so every
//     accepted connection is counted), accepted connections finish
//     (bounded by half the deadline: a busy one closes after its response,
//     an idle keep-alive one is closed once idle for
//     ServerConfig.DrainIdleGrace, never under a request its client may be
//     sending: a connection is idle only while no byte came since its last
//     response, neither read by net/http, which says StateActive only once
//     a whole header is in, nor waiting in the socket's receive queue), then http.Server.Shutdown with the rest of the deadline,
//     then Close;
//   - drains for at most 700 ms and exits the process when its master dies
//     (EOF on the death pipe, fd 5).
//
// Its server gets the limits of Config.Server (ServerConfig) on the fields
// NewServer left zero: IdleTimeout 75 s, ReadHeaderTimeout 10 s, a body read
// deadline of 60 s from the handler's start (unless the server has a
// ReadTimeout), MaxHeaderBytes 1 MiB and an error log rate-limited to one
// line a second (accept errors under EMFILE); and, with RequestTimeout set
// (default off), a deadline per request: the handler's context cancelled,
// a 503 if it had written nothing, and the request counted as hung for the
// master (master.Config.HungRequests). ServerConfig.Apply,
// ServerConfig.BodyDeadline, ServerConfig.RequestDeadline and NewErrorLog
// give any other server the same.
//
// The requests a worker serves on the shared socket (not its warm-up's) are
// counted in its control block, the one count: heartbeats take their
// cycle's Requests from it and the master compares it with the worker's
// request limit (master.Config.MaxRequests plus its jitter, which the master
// stores in the block before the spawn; the request that reaches it wakes
// the master). Its hung requests are counted there too. The net/http server
// counts both itself; a server run through Config.Serve calls CountRequest
// as each request completes and RequestHung when one passes a deadline of
// its own, or its requests are not counted (nor recycled by MaxRequests).
//
// Config.Serve and Config.Drain run another server instead (gRPC,
// fasthttp, a custom protocol): Serve gets the private warm-up listener,
// then the worker's listener of the shared socket (again after a resume),
// and returns when the worker closes it; the drain closes the listener,
// calls Drain with the deadline, waits for the connections the listeners
// accepted and closes what is left. The listeners count connections for the
// heartbeat; requests are counted when the server calls CountRequest. See
// serve.go and docs/runtime.md, "Any server".
//
// A start that fails (WarmUp's error, Attach's, ConfigureApp's) is written
// into the worker's control block before the failure is reported or the
// process exits, so that the master's error carries it.
//
// IsWorker (cluster2.CurrentRole) reads the environment when the program
// starts: Run removes the protocol's variables (programs a worker runs are
// not workers), and IsWorker still says true afterwards.
//
// # Caveats
//
// The worker never calls Fd on a file made by net.TCPListener.File: O_NONBLOCK
// belongs to the socket's open file description, shared by every process,
// and switching it to blocking mode would hang draining workers in accept.
// A Worker is safe for concurrent use; it must not be copied.
package worker
