// Package master is the supervisor of a cluster2 cluster, the one owner of
// every child process: it spawns the workers (executing the binary's path with
// the shared socket, the arena and a death pipe as inherited descriptors),
// follows their states and heartbeats through the arena's supervision
// region, and replaces them; and it runs the cluster's auxiliary processes
// (Config.Aux: cluster2's cache manager) through the same spawn, reap and
// respawn path.
//
//	master ──spawn──▶ auxiliary process (slot n-1: the cache manager), then
//	   │                workers (slots 1 … n-2); every child: internal/proc's
//	   │                role variables, fds 4 (arena) and 5 (death pipe),
//	   │                fd 3 (listener) for workers only
//	   ├──reap──▶ slot released, EventDied / EventAuxDied
//	   └──respawn──▶ the same slot, after the child's crash back-off
//
// Most programs use it through cluster2.Listen; it is a package of its own so
// that its state machine and policies can be read and tested alone.
//
// # Start
//
// Start validates the Config, spawns the auxiliary processes (waiting until
// each is ready) and the initial workers, and returns at once: the workers
// are forked, listed by Workers, not up yet. WaitUp blocks until every one
// of them is listening and warmed up (retrying a failed one, ReplaceRetries
// times, with back-off), then puts the cluster up (Up, EventUp) and starts
// the death queue and the signal handling; before that the control methods
// return ErrWrongState. So the master's state (Workers, Respawning,
// Auxiliary) can be asked from the start on: nobody has to rebuild it from
// the events.
//
// # States
//
//	forked ──▶ warming ──▶ active ⇄ paused
//	   │          │          │
//	   └──────────┴──────────┴──▶ old (successor ready; draining) ──▶ died
//
// A worker is forked when spawned, warming once it reports warm-up, active
// once it accepts on the shared socket, paused by Pause, old once its
// successor is ready and it is told to drain, died when reaped. Only active
// workers are judged by ShouldKill, MemoryLimit, the nanny, MaxRequests and
// HungRequests.
//
// # Replacement
//
//   - A worker that exits unasked (crash, kill -9, SIGTERM from outside) is
//     reaped at once (process wait), its arena slot is released
//     (shm.Arena.ReleaseSlot, which releases its robust locks), and a new
//     worker takes the slot, after a back-off that grows ×1.5 per crash in a
//     row (crashes closer than CrashBackoffMax) up to CrashBackoffMax.
//   - A respawn whose spawn fails (fork/exec out of descriptors or memory)
//     is retried, 250 ms after the failure and ×2 per failure up to
//     CrashBackoffMax, until the slot is filled or the cluster stops: the
//     slot stays reserved, Respawning lists it (the cluster registers it as
//     the "respawns" status, shown by the monitor's /status), and each
//     failure is logged at ERROR and emitted as "respawn-failure".
//   - Every other replacement (ShouldKill, MaxAge, nanny, MemoryLimit,
//     MaxRequests, HungRequests, Replace, RollingRestart, SIGHUP) goes
//     through the death queue, each request with its Reason (so do Scale's
//     requests: see Scaling): FIFO,
//     one at a time, a pid already queued is ignored. A successor is spawned
//     and must be listening and warmed up within ReplaceTimeout; a successor
//     that fails (warm-up failure, crash, timeout) is killed, never the old
//     worker, and another is tried after a back-off, ReplaceRetries times.
//     If none succeeds a "replace-failure" event is emitted, the old
//     worker keeps serving, and the queue waits before its next replacement
//     (1 s, ×1.5 per failure in a row, capped at CrashBackoffMax). Once a
//     successor is ready the old worker is told to drain; past
//     ReplaceTimeout it gets SIGTERM, and SIGKILL past as long again.
//   - An old worker that neither acknowledges the drain (reports draining)
//     nor sends a heartbeat within 2 × HeartbeatInterval (at least 1 s, at
//     most ReplaceTimeout) cannot drain (SIGSTOPped, hung): it is killed at
//     once ("unresponsive", then "sigkill" events), so that its open
//     connections do not hang for 2 × ReplaceTimeout. Stop applies the
//     same grace to every worker it tells to drain: a stop does not wait
//     StopTimeout for a worker that cannot drain.
//   - Recycling: the master's own rules queue an active worker (never a
//     paused, old or guarded one) and emit EventRecycled with the rule's
//     Reason: ShouldKill (MaxAge by default), MemoryLimit, the nanny,
//     MaxRequests (each worker's limit MaxRequests plus a jitter drawn in
//     [0, MaxRequestsJitter] at its spawn and stored in its control block;
//     the worker counts the requests it serves there and wakes the master
//     at its limit) and HungRequests (that many requests past the worker's
//     Server.RequestTimeout within HungWindow, which the worker counts in
//     its control block; a worker whose stuck handlers keep it from
//     draining stops at its drain deadline, is SIGTERMed past
//     ReplaceTimeout and SIGKILLed past as long again). Replacements
//     counts the replacements done by Reason.
//   - ReplaceTimeout bounds every worker's readiness, the initial workers'
//     included: WaitUp waits up to ReplaceTimeout for each (and the worker
//     bounds its WarmUp by the same value when cluster2.Listen starts it).
//   - Every back-off is internal/backoff's rule (a first delay, ×factor per
//     failure in a row, a cap), with its own figures: crashes 0 for a lone
//     one, then 100 ms ×1.5; failed spawns 250 ms ×2; the death queue after
//     a failed replacement 1 s ×1.5 (all capped at CrashBackoffMax); a
//     guarded start's retries 200 ms ×1.5 up to 5 s.
//
// # Scaling
//
// Scale(ctx, n) sets the target worker count (SIGTTIN +1 and SIGTTOU −1
// with HandleSignals, gunicorn's convention); Target, MaxWorkers and
// Scaling report it. The target is what every path that adds a worker
// obeys: Start spawns Config.Workers; a crashed kept worker is respawned
// unless the kept workers already reach the target (a scale-down since);
// a replacement (RollingRestart, ShouldKill, …) is one for one, so a
// rolling restart keeps the scaled count; Adopt takes the previous
// image's target (cluster2 carries it in the handover), so an in-place
// upgrade keeps it too.
//
// A scale request runs on the death queue, FIFO with the replacements:
// Scale during a rolling restart waits until the replacements queued before
// it are done, and no replacement runs while it does. Scaling up starts one
// worker at a time, guarded as a successor is: it warms up on its private
// address, listens, and only then counts (one that fails is killed and
// retried, ReplaceRetries times; then ErrScaleFailed, the target stays and
// the workers that came up are kept). Scaling down takes first a worker
// still starting (a crash's respawn: it serves nothing, and SIGTERM ends its
// warm-up without joining the socket), then a paused one (it serves
// nothing), then the oldest
// (gunicorn's choice: the longest-running worker has the most grown heap
// and is the nearest to its MaxAge replacement, and a recent deploy's new
// workers stay), one queued for a replacement last — emits EventOld, and
// tells each to drain within StopTimeout: it stops accepting and finishes
// its in-flight requests; a worker still there past StopTimeout gets
// SIGTERM, past as long again SIGKILL (never at once: the unresponsive
// grace applies, as to any dismissed worker). Scale returns once the new
// workers listen, or the victims are gone.
//
// The ceiling is MaxWorkers: Config.MaxWorkers (default twice the larger
// of Workers and the number of CPUs), at most half the arena's worker
// slots, because the process table is fixed when the arena is made (the
// other half leaves room for successors and draining workers). Above it
// Scale returns ErrAboveCeiling, below 1 ErrScaleRange, and nothing
// changes. During an in-place upgrade (Freeze, or an adopting image until
// UpgradeEnded) Scale returns ErrUpgrading; Freeze waits for a scale
// request that is running. EventScale (Event.Workers: the new target) is
// made in Scale, the one place the target changes.
//
// # Deploying a new binary
//
// Every child is spawned from Config.Exe, by default the executable's path
// resolved once when Start applies the defaults (DefaultExe: os.Executable),
// not /proc/self/exe, which always names the file the master was started
// from. So the usual deploy is: rename the new binary over the path (write
// it next to it, then mv, so that no process ever runs a half-written
// file), then SIGHUP (or RollingRestart): every successor, the cache
// manager restarted later included, runs the file on disk now, while the
// master itself keeps running the old one. A path reached through a
// symlink is resolved to the symlink's target at start: a deploy that
// switches a symlink names the symlink in Config.Exe (cluster2's
// Config.Executable).
//
// With Config.Check set (cluster2 sets it to cluster2.Check), RollingRestart
// checks the binary at Exe before its first successor, bounded by
// ReplaceTimeout: a failure is logged, emitted (EventCheckFailed, Err: why)
// and returned, and no worker is replaced.
//
// # Upgrading in place
//
// The master's own image is replaced by cluster2 (docs/runtime.md,
// "Upgrading the master in place"); this package's part is Freeze (hold the
// master: no replacement, no spawn; list the live children), Thaw (the
// execve failed), DeathPipe (the ends to hand over) and Adopt, which the
// next image of the same process calls instead of Start: it follows the
// children the previous image spawned (still its children) by pidfd and
// each worker's control block from its current state, emits
// EventAdopted for each and is up when it returns. ReplaceWorkers then
// replaces the old build's workers, and UpgradeEnded emits
// EventUpgradeDone. SIGUSR2 runs Config.Upgrade.
//
// # Auxiliary processes
//
// Each Config.Aux is a role of internal/proc with a fixed slot (the last
// one). Start spawns them before any worker and waits until each is Ready
// (the cache manager: the space has a log writer, so that no worker writes
// before somebody logs); one that exits first fails Start (ErrStartFailed).
// From then on an auxiliary process is kept like a listening worker: when
// it dies it is reaped at once, its slot released, EventAuxDied emitted, and
// it is respawned in its slot after its own crash back-off (the workers'
// rule, capped at Aux.CrashBackoffMax), EventAuxForked again; a spawn that
// fails is retried as a worker's and listed by Respawning. It is stopped
// last: once the last worker is gone the master closes the death pipe's
// write end, which the process reads as EOF, its signal to finish, and
// waits for it (SIGKILL past Aux.StopTimeout) before Done closes. Kill
// kills the workers, never an auxiliary process: it still stops after them.
// Auxiliary lists the live ones; they are never in Workers, the death queue
// or the pid files.
//
// # Events
//
// Config.OnEvent receives typed events (Event, its Kind): a worker's events
// (EventForked, EventWarming, EventWarmUp, EventWarmUpFailure,
// EventListening, EventPaused, EventResumed, EventDraining, EventOld,
// EventUnresponsive, EventSigTerm, EventSigKill, EventDied,
// EventReplaceFailure, EventRecycled, whose Reason says which rule, as
// EventOld's says why it is replaced) and cluster events (EventUp, EventDown,
// EventRollingRestart and EventRollingRestartDone (its Err the replacements'
// failures), EventScale (Workers: the new target), and EventRespawnFailure,
// whose Slot names the slot and Pid is 0), and an auxiliary process's (EventAuxForked, EventAuxDied, with
// its Pid and Slot): the hook through which the emitter publishes them to other
// processes. The master makes every one of them here, in one place (emit);
// the ECV's marks (EventMarkUp, EventMarkDown) are the same type, made by the
// monitor. One table (event.go) gives each Kind its name and the worker
// State it implies (Kind.State); Event.Name is the name the emitter
// publishes: "worker-<pid>-<kind>" for a worker's event
// ("worker-4242-listening"), the kind's name for the others ("up",
// "respawn-failure", "markUp"). Consumers switch on Kind, never on the name.
//
// A worker's start events arrive in this order for every worker:
// forked, warming, then warmup and listening, or warmup-failure. The master
// sees only a worker's latest state (a fast warm-up passes warming and warmed
// between two looks), so when it sees a later state it emits the skipped
// events first, in order; their Time is when the master noticed. A worker
// stopped during warm-up (SIGTERM) or one that crashes has no further start
// event, only died. Likewise a worker that listened and drains (dismissed,
// or a stop) always has its draining event before died, even when its drain
// was so short that the master saw it only stopped. The State in Workers is
// a sample of the latest state and may skip Warming.
//
// A warmup-failure's Err wraps ErrWarmUp with WarmUp's own error, which the
// worker writes into its control block before it reports the failure; a
// worker that exits before listening for another reason (Attach,
// ConfigureApp) writes the error Run returns, and the successor's failure
// (and WaitUp's ErrStartFailed) wraps ErrExited with it.
//
// # Pid files
//
// With Config.PidDir set, the master writes master.<pid>.pid and
// worker.<pid>.pid (the pid and a newline) there. PidDir is created 0700;
// Start refuses, before it starts anything (an error wrapping ErrPidDir), a
// PidDir that is a symlink, not a directory, not owned by the master's
// effective user, or writable by group or others: another user could plant
// a symlink named as a pid file there. A pid file is written to a new file
// (O_EXCL, O_NOFOLLOW) renamed over its name, so a planted symlink is
// replaced, never followed. Before writing its own, Start removes the pid
// files of pids that are not live processes (gone or zombies: what a master
// killed with SIGKILL left); a live pid's file always stays, so clusters
// may share a PidDir, and a dead pid reused since leaves a stale file
// rather than a live one's removed. The layout and crash argument are in
// piddir.go.
//
// # Caveats
//
// Workers get slots 1 … n-2 of the arena's process table: slot 0 is the
// master's and the last slot is the auxiliary process's (the cache manager);
// internal/proc's SlotRole says which is whose.
//
// The master holds the listening socket's descriptor for the life of the
// cluster (so that no queued connection is lost when a worker exits) and the
// only write end of the death pipe (so that its death, however it happens,
// is an EOF in every child). It hands the socket to workers only, and the
// write end to no one.
package master
