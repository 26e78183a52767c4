// Package proc is the re-exec protocol between a cluster2 master and its
// children (the workers and the auxiliary process, the cache manager): the
// roles, how a child learns its role and slot, which inherited descriptors
// hold what, which slot of the arena's process table belongs to whom, and
// the supervision region of the arena through which the master and its
// workers steer each other without polling.
//
// # Roles and slots
//
// A process of a cluster is the master ([RoleMaster]), a worker
// ([RoleWorker]) or the cache manager ([RoleCacheManager], Cache.Mode
// standalone). The role decides the slot of the process table:
//
//	slot 0          the master's            RoleMaster.Slot(n)
//	slots 1 … n-2   workers (and successors) SlotRole(slot, n) == RoleWorker
//	slot n-1        the auxiliary process's  RoleCacheManager.Slot(n)
//
// A role's value is also what the process stores in its slot
// (shm.SlotInfo.Role).
//
// [RoleCheck] is not a member of the cluster: it is a new binary run once
// before it replaces anything (cluster2.Check, before a rolling restart's
// first successor or an upgrade's exec). It holds no slot and inherits only
// [CheckFD] (fd 3), the write end of a pipe: its cluster2.Listen writes the
// build's information there as one JSON line and exits 0, before it creates
// anything (no socket, no arena, no file).
//
// # Re-exec
//
// The master executes its binary's path (master.Config.Exe: the path
// resolved at start, not /proc/self/exe, so that a rolling restart runs the
// file on disk now; same arguments) with
// [EnvRole] set to the child's role ("worker", "cache-manager"), [EnvSlot] to
// its slot and [EnvMaster] to the master's pid ([ChildEnv]); the presence of
// these variables is what makes a process a child, and [Self] returns what
// they said when the program started. Every child inherits, at fixed
// numbers:
//
//	fd 3  ListenerFD  the shared listening socket (one open file description
//	                  for the whole cluster, non-blocking; see Caveats);
//	                  workers only: closed in the auxiliary process
//	fd 4  ArenaFD     the arena's memfd
//	fd 5  DeathFD     the read end of a pipe whose write end only the master
//	                  holds: EOF on it means the master is gone
//
// # Handover (an in-place upgrade of the master)
//
// A master that replaces its own image (execve, same pid) passes its next
// image a [Handover] in [EnvHandover] (JSON, [HandoverVersion]): the
// numbers of the descriptors it left open across the exec (duplicates,
// numbered 10 or above, of the listener, the arena, both ends of the death
// pipe, the monitor's sockets; an O_PATH descriptor of the previous binary),
// its slot-0 token and its live children. The children see nothing: their
// descriptors, slot and master pid are unchanged. [TakeHandover] reads and
// unsets it; only the master's own exec sets it ([Handover.EnvWith]), so a
// child never inherits one.
//
// # Supervision region (format: changing it bumps [LayoutVersion])
//
// The region named [RegionName] holds one [Block] per slot of the process
// table ([BlockSize] bytes each, indexed by slot number; slot 0, the master's,
// is unused). A block is five 128-byte lines so that the master's writes and
// the worker's writes never share a cache line pair:
//
//		offset 0   ┌───────────────── written by the master ─────────────────┐
//		           │ want u32 │ spawn u32 │ toWorker Event(8) │ deadline i64 │     │
//		           │ reqLimit u64 │ pad                                      │ 128 B
//		offset 128 ├───────────────── written by the worker ─────────────────┤
//		           │ state u32 │ pid u32 │ toMaster Event(8) │ hbSeq u64 │     │
//		           │ hb [16]u64 (Heartbeat words, under the hbSeq seqlock)   │
//		offset 280 │ rlen u64 │ reason [12]u64 (96 bytes of text)            │ 256 B
//		offset 384 ├───────────── written by the worker, once ───────────────┤
//		           │ blen u64 │ build [15]u64 (120 bytes of text)            │ 128 B
//		offset 512 ├──────── written by the worker, on every accept ─────────┤
//		           │ accepts u64 │ requests u64 │ hung u64 │ pad             │ 128 B
//		offset 640 └──────────────────────────────────────────────────────────┘
//
//	  - want (master → worker): what the master wants the worker to do:
//	    [WantRun], [WantPause] or [WantDrain]. The master stores it, then wakes
//	    toWorker. Transitions: run ⇄ pause, run|pause → drain (drain is final:
//	    [Block.SetWant] changes want by compare-and-swap from the value it
//	    found not to be drain, so a Pause or Resume racing a Stop can never
//	    overwrite the drain; only [Block.Reset], for a new process, leaves it).
//	  - spawn (master): a counter the master bumps each time it resets the block
//	    for a new process, for logs only.
//	  - deadline (master): how long, in nanoseconds, the worker may take to drain
//	    once want is drain (0: the worker's own default).
//	  - reqLimit (master): the served requests after which the master recycles
//	    this process (master.Config.MaxRequests plus its jitter, drawn per
//	    process; 0: none). Stored after Reset, before the spawn, never
//	    changed while the process lives; the worker loads it when it joins
//	    and wakes toMaster when its requests reach it (so that the master
//	    need not poll the count). Layout version 5 added it in what was
//	    padding.
//	  - state (worker → master): the worker's progress: [StateForked] (zero,
//	    what the master's reset leaves), [StateWarming], [StateWarmed],
//	    [StateListening], [StatePaused], [StateDraining], [StateWarmFailed],
//	    [StateStopped]. The worker stores it, then wakes toMaster.
//	  - pid (worker): the worker's pid, stored before its first state.
//	  - hbSeq and hb (worker): the latest heartbeat under a seqlock: the worker
//	    makes hbSeq odd, stores the words, makes it even again; a reader loads
//	    hbSeq, the words, and hbSeq again, and keeps the copy only when both
//	    loads are equal and even. The worker wakes toMaster after each heartbeat.
//	  - rlen and reason (worker): why the worker failed to start (WarmUp's
//	    error, or Attach's, ConfigureApp's …), at most [ReasonMax] bytes of
//	    text, little-endian in the words. The worker writes them once, words
//	    first, then rlen, then (for a warm-up failure) the state; the master
//	    reads them after seeing [StateWarmFailed], or after reaping a worker
//	    that exited before listening (no writer is left then). Layout version
//	    2 added them in what was padding; a version-1 master would not find
//	    the region (its name carries the version).
//	  - blen and build (worker): the worker's build, written once when it
//	    joins, before its first state ([Block.SetBuild]): version, short VCS
//	    revision and Go version, NUL-separated, at most [BuildMax] bytes
//	    (the version is cut first, to what the other two leave). Words
//	    first, then blen, as the reason; the master reads them
//	    ([Block.Build]) once it sees a state past forked, and keeps the copy:
//	    nobody writes them again until the next Reset. Layout version 3
//	    added this line (the block grew from 384 to 512 bytes); a version-2
//	    process would not find the region (its name carries the version).
//	  - accepts and requests (worker): the connections the worker accepted
//	    on the shared socket and the requests it completed since it started
//	    ([Block.CountAccept], [Block.CountRequests]: atomic adds by any of
//	    its goroutines), read live by the master ([Block.Accepts],
//	    [Block.Requests]: master.WorkerInfo, /metrics). The worker counts,
//	    the others only read: one owner of each count. A request is counted
//	    when its handler returns, before its response is flushed, so a
//	    client that has its response finds it counted. [Block.Reset] zeroes
//	    them for the next process of the slot. Layout version 4 added this
//	    line (the block grew from 512 to 640 bytes); a version-3 process
//	    would not find the region (its name carries the version). The
//	    requests are those served on the shared socket, not the warm-up's;
//	    the master compares them with reqLimit (MaxRequests), and the
//	    heartbeats take their cycle's Requests from the same count.
//	  - hung (worker): the requests that passed the server's RequestTimeout
//	    ([Block.AddHung], an atomic add, then a wake of toMaster; read with
//	    [Block.Hung]); the master replaces a worker with
//	    master.Config.HungRequests of them within HungWindow. Zeroed by
//	    Reset. Layout version 5 added it in this line's padding.
//
// # Memory order
//
// Every word is a sync/atomic typed atomic (sequentially consistent). A store
// to want or state synchronizes before the load that observes it on the other
// side; the Event handshake (store, then Wake; Prepare, then re-check) makes
// sure a sleeper never misses it. A process may also wake its own sleeper
// (WakeWorker, WakeMaster) after making a local condition true: the sleeper
// passes that condition to WaitWant or WaitMaster, which re-check it after
// announcing, so that wake-up is never lost either. The seqlock's stores happen in program
// order, so a reader that saw the same even hbSeq before and after its loads
// read one heartbeat, never a mix of two.
//
// # What a crash leaves behind
//
// A worker killed mid-heartbeat leaves hbSeq odd: readers see no new heartbeat
// (the nanny then notices). A worker killed at any point leaves a stale state;
// the master learns of the death from process wait, not from the block, and
// resets the block ([Block.Reset]) before it spawns the next process in that
// slot; its counters (accepts, requests, hung) stay as they were until then,
// and are read no more once it is reaped. A master killed leaves want as it was; its workers learn of the death
// from EOF on DeathFD, not from the block. Event waiter counts may be left one
// too high, which costs a spurious wake system call, never a lost wake-up.
//
// # Caveats
//
// O_NONBLOCK belongs to the shared open file description of the listener, so
// any process that switches its descriptor to blocking mode (os.File.Fd on a
// file made by net.TCPListener.File does) switches it for every worker, and a
// draining worker then hangs in accept. The master therefore hands over a
// descriptor made with os.NewFile on a dup, whose Fd leaves the mode alone,
// and re-asserts non-blocking mode after every spawn ([SetNonblock]).
package proc
