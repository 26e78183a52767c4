// Package cluster2 runs prefork HTTP servers on Linux: a master process
// re-executes its own binary as N workers that serve one shared listening
// socket, and everything that crosses processes goes through one shared
// memory arena (package shm) that the master creates and every process maps.
//
// The house on one page (which package owns which process, which region of
// the arena, which file; which way events flow; the one direction of
// imports, checked by TestImportGraph) is docs/house.md.
//
// # Process model
//
// The user's main calls [Listen] in every process. In the master, Listen
// creates the listening socket (or takes the one systemd passed for
// Config.Addr: socket activation, LISTEN_FDS) and the arena, executes the binary's path
// (Config.Executable: by default the path resolved at start, so that a
// rolling restart after a new build was renamed over it runs the new file;
// same arguments, environment plus the worker protocol's variables) once per
// worker, handing both over as inherited descriptors, and returns once every
// initial worker is listening and warmed up. In a worker, Listen warms up the
// handler on a private loopback address (Config.WarmUp), joins the shared
// socket, and returns once it accepts there.
//
//	master ── creates ──▶ socket :8080 (one open file description) + arena (memfd)
//	   │ re-exec, fds 3 (socket, workers only), 4 (arena), 5 (death pipe)
//	   ├──▶ cache manager slot n-1 (Cache.Mode standalone): first, stopped last
//	   ├──▶ worker slot 1: warm up on 127.0.0.1:x → accept on :8080
//	   └──▶ worker slot 2: warm up on 127.0.0.1:y → accept on :8080
//
// Worker states, as the master sees them: forked → warming → active ⇄
// paused → old → died. The master and each worker steer each other through a
// control block per slot in the arena (package internal/proc documents its
// layout and memory order): the master writes what it wants (run, pause,
// drain), the worker writes its state and a heartbeat every
// HeartbeatInterval; each side wakes the other through a futex event, so
// nobody polls.
//
// # Events
//
// Lifecycle events are typed (Event, a master.Event: Kind, Pid, Slot, Err,
// Time). The master makes them, the monitor makes the ECV's marks, and each
// takes one path in the master, to an ordered list of subscribers: the
// emitter (which publishes it to every process under Event.Name, such as
// "worker-<pid>-listening" or "up"), the monitor, the service manager
// (systemd's notify protocol, when NOTIFY_SOCKET is set: READY=1,
// RELOADING=1, STOPPING=1; see docs/runtime.md), then Config.OnEvent.
//
//	master (forked … died, up, down, …) ─┐
//	monitor (markUp, markDown) ──────────┴─▶ emitter ─▶ monitor ─▶ sd_notify ─▶ Config.OnEvent
//
// # Supervision
//
// Package master supervises every child process, through one spawn, reap
// and respawn path: the workers, and the cache manager of Cache.Mode
// standalone, which Listen registers as an auxiliary process
// (master.Config.Aux). internal/proc defines the roles, the environment and
// the descriptor numbers every child reads, and which slot of the arena's
// process table is whose (0 the master's, the last the cache manager's).
//
//   - A worker that dies is noticed at once (process wait), its arena slot is
//     released (its robust locks with it), and it is replaced, with a back-off
//     (×1.5 per crash in a row, capped) when it keeps crashing. A spawn that
//     fails (the master out of descriptors) is retried until the slot is
//     filled; Cluster.Respawning and the "respawns" status say so meanwhile.
//   - The cache manager goes the same way: spawned before any worker (Listen
//     waits until it is the log writer), restarted after the same back-off
//     (capped at 5 s) when it dies, stopped after the last worker.
//   - Replacements (ShouldKill, MaxAge, the nanny, MemoryLimit, Replace,
//     RollingRestart, SIGHUP) go through the death queue: FIFO, one at a
//     time; a successor starts first and must listen and warm up within
//     ReplaceTimeout (with ReplaceRetries more tries); if it cannot, it is
//     killed and the old worker keeps serving. Only then is the old worker
//     told to drain: its listener closed, responses with "Connection:
//     close", idle keep-alive connections closed after a grace (never under
//     a request in flight), then http.Server.Shutdown with a deadline; past
//     ReplaceTimeout it gets SIGTERM, and SIGKILL after as long again. One
//     that neither drains nor heartbeats (SIGSTOPped) is killed after a
//     short grace.
//   - A rolling restart first checks the binary on disk (Check: it runs in
//     check mode, where Listen writes its BuildInfo to fd 3 and exits): a
//     file that is missing, not executable, for another architecture, that
//     exits before Listen (a panic in init) or speaks another Layout refuses
//     the whole restart (ErrCheckFailed, the "check-failure" event) and
//     every old worker keeps serving. A new layout never attaches to a
//     running arena: stop and start the cluster.
//   - Every worker's server has production limits (Config.Server): idle
//     keep-alive timeout 75 s, header 10 s, body 60 s, 1 MiB of header, a
//     rate-limited error log.
//   - SIGINT or SIGTERM to the master stops the cluster gracefully within
//     StopTimeout; a second signal stops it at once. SIGTERM to a worker
//     drains it. A worker whose master dies drains and exits within a
//     second: it reads EOF on a pipe whose write end only the master holds.
//
// # What a Cluster owns
//
// In each process the [Cluster] owns its event bus ([Cluster.Emitter]), the
// status registry on it ([Cluster.Status]) and, with Config.Cache.Enabled,
// its shared cache space ([Cluster.Caches]). Listen makes or adopts them in
// one place before anything uses them (it adopts emitter.Default, so
// listeners registered before Listen stay) and hands them to the emitter's,
// the cache's and the monitor's runtimes; it registers the built-in statuses
// (status.os in each worker, deathQueue and respawns in the master) in the
// Cluster's registry. It also makes them the package-level defaults
// (emitter.Default, status.Default, cache.Default) for the user's code, but
// nothing of the runtime, the monitor included, reads those defaults.
//
// # Configuration
//
// [Config] is the one configuration of every process; Listen hands each
// layer its share under the same field names (master.Config for the
// supervisor, worker.Config in each worker). Each setting has one default,
// a constant of the package that applies it (worker.DefaultStopTimeout,
// master.DefaultMaxAge, shm.DefaultSize ...), and each range is checked in
// one place: [DefaultConfig] and [Config.String] show them all. Every layer
// refuses a bad field with an error wrapping the one [ErrInvalidConfig]
// (master.ErrInvalidConfig, cache.ErrInvalidConfig ... are the same value),
// whose message names the package and the field. See docs/runtime.md.
//
// # Origin
//
// cluster2 reimplements in Go the Node.js module of the same name,
// ql-io/cluster2 (github.com/ql-io/cluster2). Comments call it "the Node
// original" where a behaviour or a name comes from it (its createServer,
// deathQueue status, dismiss event, ...); docs/*.md, which record where
// cluster2 departs from it and why, call it "the seed".
//
// # Caveats
//
//   - Go cannot fork: workers are new processes running main from the start.
//     Everything before Listen runs in every process (and in a binary being
//     checked: CurrentRole is Checking there); keep it cheap and side-effect
//     free, and build the same Config in every process.
//   - The listening socket is one open file description shared by every
//     process: its O_NONBLOCK flag is shared too. Never call Fd on a file
//     made by net.TCPListener.File in a cluster2 process.
//   - Listen handles SIGINT, SIGTERM and SIGHUP in the master (unless
//     Config.NoSignals) and SIGTERM in workers, which ignore SIGINT (from a
//     terminal it reaches the master, which orchestrates the stop).
package cluster2
