// Package monitor is the master's monitor server: the cluster's ECV for load
// balancers, a liveness route, a live dashboard, the binary's dependencies,
// the aggregated statuses, Prometheus metrics and every worker's profiles.
//
// It runs in the master only (package cluster2 starts it on
// Config.MonitorAddr) and shows and controls the cluster through a Source,
// which the runtime implements for its master and tests fake.
//
// # Routes
//
//	GET  /livez                          200 "ok" while the master runs (never follows the ECV)
//	ANY  /ecv                            the ECV (ECVOptions.Root): 200 "ECV UP", or 503 (404) and why
//	POST /ecv/markUp, /ecv/markDown      control mode: in and out of rotation [guarded]
//	GET  /debug                          the dashboard (embedded page, script and style)
//	GET  /debug/events                   server-sent events: "snapshot" (the overview), "lifecycle"
//	GET  /debug/api/overview             everything the dashboard shows, as JSON
//	GET  /debug/api/workers[/{pid}]      workers: state, heartbeat figures, chart history, totals
//	GET  /debug/api/caches               caches: entries, bytes, hit ratio, evictions, persist, expire
//	GET  /debug/api/caches/{name}/changes server-sent "change" events of a cache's keys [guarded]
//	GET  /debug/api/ecv, /debug/api/events the ECV's state; the latest lifecycle events
//	POST /debug/api/workers/{pid}/{pause|resume|replace}                 [guarded]
//	POST /debug/api/rolling-restart[?wait=1], /debug/api/ecv/{markUp|markDown} [guarded]
//	POST /debug/api/upgrade (in-place upgrade of the master; UpgradeSource)   [guarded]
//	POST /debug/api/scale?workers=N (the worker count; ScaleSource: 200 once reached, 409 refused) [guarded]
//	GET  /debug/workers/{pid}/pprof/{profile|heap|goroutine|trace|…}     [guarded]
//	GET  /deps, /metrics                 dependencies, Prometheus exposition
//	GET  /status                         statuses: status.os (worker.Heartbeat), ecv, the application's [guarded]
//
// # Who may do what
//
// /ecv and /livez answer anyone (load balancers). Every other route
// refuses, for any method, cross-site browser requests (Sec-Fetch-Site
// other than same-origin or none, or an Origin not of the request's Host),
// and answers only Host headers it may (against DNS rebinding: on loopback,
// loopback names and addresses plus Options.AllowedHosts). GET never
// changes state: markUp and markDown take POST (ECVOptions.MarkWithGET adds
// GET). Guarded routes need Options.Token when one is set, wherever the
// server listens ("Authorization: Bearer …", or access_token in the query
// of a request with no Authorization header); with no token they are open
// on loopback (Start warns that any local user has control) and 403 beyond
// it. docs/monitor.md has the threat model.
//
// # The ECV
//
// The ECV answers for the cluster as a whole, from four facts held in the
// master (they survive the replacement of any worker):
//
//	warm        the master's "up" event: every initial worker listened and warmed up
//	stopping    the master's "down" event: a graceful stop began (before any worker drains)
//	markedDown  markUp / markDown (control mode)
//	active      workers accepting now, against ECVOptions.MinActive
//	persist     a PersistSource's log cannot be written, and it asks the ECV down meanwhile
//
// It is up when warm, not stopping, not marked down, with enough active
// workers and no such persistence failure; in monitor mode it also needs the
// application check to pass. A PersistSource's state is shown on the
// dashboard too (a red badge while the log cannot be written).
// Bodies start with BodyUp, BodyDisabled (marked down only) or BodyDown, so
// that F5's receive / receive-disable strings and HAProxy's
// "http-check expect string" can tell them apart; see docs/monitor.md.
//
// # Profiles
//
// Each worker serves its own profiles (ServeProfiles) on a unix socket in a
// directory the master created with mode 0700 (MakeProfileDir); the monitor
// proxies to it. The profiles are written with runtime/pprof and
// runtime/trace: importing net/http/pprof would register its routes on
// http.DefaultServeMux of every application built with cluster2.
//
// # Caveats
//
// A Server samples its Source from New until Close: always Close it. Per
// worker counters in /metrics (errors, GC, CPU seconds) are sums of the
// heartbeats the monitor saw, so they start at zero when the master does,
// and a heartbeat the monitor missed (two within one SampleInterval) is not
// counted; the accepts, requests and hung requests are the worker's own
// counts (its control block, master.WorkerInfo), since it started. The key
// feed shows at most 256 bytes of each value and drops changes a slow page
// cannot take (it says how many).
package monitor
