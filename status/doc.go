// Package status lets every process of a cluster publish named statuses,
// and the master read and update them cluster-wide: the Node original's
// cluster2/status, over the emitter.
//
// # Model
//
// A process registers a status with a view function (its current value,
// JSON-encodable) and, optionally, an update function. [Registry.Get] from
// the master returns one [Entry] per process that registered the name: the
// master itself and every live worker; from a worker, only that worker.
// [Registry.Set] passes a value to each of those processes' update
// functions and returns their results.
//
// Protocol, on reserved emitter events (names start with "cluster2.status."):
//
//	worker ──register(name) / unregister(name)──▶ master   (the master keeps name → pids)
//	master ──get(id, name) / set(id, name, value)──▶ worker
//	worker ──reply(id, status JSON, error text or null)──▶ master
//
// The master asks every live worker that registered the name at once and
// waits for each answer until the context ends (DefaultTimeout, 1 s, when
// it has no deadline). A worker that does not answer in time gives an Entry
// whose Err wraps [ErrTimeout]; the call fails only for a name that no
// reachable process registered ([ErrUnknown]). The master's own entry, when
// it registered the name, comes first; workers follow by pid.
//
// Workers that die leave the registry when the emitter no longer lists them
// among its peers. Registrations made in a worker before its emitter was
// attached reach the master when [Registry.Announce] is called (the runtime
// does it after attaching).
//
// # The default registry
//
// The package-level functions ([Register], [Get], …) use [Default], made at
// its first use on emitter.Default(). cluster2.Listen gives the Cluster a
// registry on the Cluster's emitter (cluster2.Cluster.Status) before that
// emitter is attached, so that its listeners are in place before any worker
// registers a status: the default registry when it talks over that emitter
// (statuses registered before Listen stay, and are announced), otherwise a
// new one. It makes it the default. The monitor's /status reads the
// Cluster's registry, never Default: [SetDefault] after Listen changes what
// the package-level functions reach, not what the monitor shows.
//
// Built-in statuses, registered by the runtime (cluster2.Listen, in one
// place) in the Cluster's registry, every one of them read-only (no update
// function):
//
//   - [NameOS] ("status.os"), in every worker: its latest heartbeat, a
//     worker.Heartbeat in its JSON form (camelCase names, durations in
//     seconds; see worker.Heartbeat.MarshalJSON), or null before the first.
//   - [NameDeathQueue] ("deathQueue"), in the master: the pids waiting for
//     replacement, the one being replaced first ([]int).
//   - [NameRespawns] ("respawns", cluster2.StatusRespawns), in the master: the slots whose
//     lost worker the master could not respawn yet (fork/exec failed) and
//     keeps retrying, as []master.Respawn (slot, attempts, error, since,
//     next); empty when every worker is there.
//   - [NameUpgrade] ("upgrade", cluster2.StatusUpgrade), in the master: the
//     last in-place upgrade, a cluster2.UpgradeStatus (state checking,
//     handing over, replacing, done or failed; from, to, started, ended,
//     error), its zero value when none ran since the master started.
//   - [NameScale] ("scale", cluster2.StatusScale), in the master: the
//     elastic worker count, a cluster2.Scaling (target: the workers the
//     master keeps, Config.Workers until a Scale; workers: the kept ones
//     now; max: the ceiling, Config.MaxWorkers).
//
// The monitor's /status shows these and every status the application
// registered, plus the monitor's own that are not registered statuses:
// "ecv" (the ECV's state), "build" (each process's build: the master's
// cluster2.BuildInfo, each worker's master.Build from its control block)
// and, with a cache data directory, "persist" (the write-ahead log's state,
// monitor.PersistInfo). Its
// "status.os" is the master's view of the workers' heartbeats, in the same
// shape, read without asking the workers.
//
// # Caveats
//
// View and update run on the registry's emitter listener goroutines in the
// answering process: one at a time per kind (get or set), so a slow view
// delays the next get of any status of that process. Values cross processes
// as JSON, and Set decodes the value from JSON in every process, the caller
// included, so every update function sees the same Go types (numbers are
// float64). An error returned by a remote update arrives as text, wrapped in
// [ErrFailed]. A registration and a Get issued right after it in another
// process may cross: registration is eventually visible, not synchronous.
package status
