// Package emitter is the cluster's event bus: an EventEmitter whose events
// cross processes over lock-free rings in the shared arena. Any process may
// emit to itself, the master, any worker by pid, every worker, or every
// process of every host (through a [Backplane]); the master routes
// worker-to-worker events (the Node original could not).
//
// # Model
//
// An [Emitter] made by [New] delivers within its process. [Emitter.Attach]
// (or [Open]) connects it to a cluster's arena: the master lays out the
// emitter region and arms one pair of [ring] rings per worker slot with
// [Emitter.AddWorker] as workers start; a worker attaches to its slot's pair.
//
//	          master                                   worker (slot i)
//	┌──────────────────────────┐   ring toWorker[i]   ┌──────────────────┐
//	│ Emit ──▶ producer ───────┼─────────────────────▶│ reader goroutine │
//	│ reader goroutine per     │   ring toMaster[i]   │        │         │
//	│ worker ◀─────────────────┼◀──────────────────── │ Emit ──┘ producer│
//	│   │ toMaster ▶ listeners │                      │ listeners        │
//	│   └ other workers ▶ their toWorker rings (routing)                 │
//	└──────────────────────────┘                      └──────────────────┘
//
// Targets ([Target]): [Self], [Master], [Workers], [AllHosts] and [Pid]. The defaults
// (Emit without To) are the Node original's: from the master, itself and every
// worker; from a worker, itself and the master. A worker's event for other
// workers travels to the master in one frame carrying its targets, and the
// master writes it to each target's ring. Every process receives an event
// at most once per Emit. An unknown or dead pid is dropped and counted in
// [Stats].Dropped, never an error that fails the sender.
//
// Handlers run on one goroutine per [Listener], in the order events reach
// the process; a ring's reader hands events to the listeners' queues and
// goes on, so a slow handler delays only its own listener until its queue
// (Options.QueueLen) fills; then the reader waits, its ring fills, and the
// senders wait in Emit (bounded by Options.SendTimeout, or EmitContext's
// context) with an error wrapping [ring.ErrFull]: nothing is dropped
// silently.
//
// Order: events from one process to another are received in emission order
// (one ring per direction, one reader, and the master forwards a worker's
// frames in the order it reads them). Events of different senders are not
// ordered with each other.
//
// # Across hosts
//
// [AllHosts] reaches every process of every host. The master of each host
// holds the host's [Backplane] ([Emitter.SetBackplane]; in a cluster2
// program, package bridge's Redis pub/sub): it publishes its own events to
// AllHosts and its workers' (a worker sends the event to its master as a
// recordHosts request and waits for the master's recordAck, so that its
// Emit returns whether the event was published), and it delivers what the
// backplane brings ([Emitter.FromBackplane]) to its own listeners and to
// every worker's ring, as its own events go. The backplane brings a
// master's own events back to it: they are dropped by their origin
// (Stats.Echoes).
//
//	host A                                            host B
//	worker ─recordHosts▶ master ─Publish─▶ backplane ─▶ master ─ring▶ workers
//	       ◀─recordAck──   │ (A's own copy comes back: dropped as an echo)
//	                       └─ring▶ A's other workers (routed as Workers)
//
// Every event carries its host of origin ([Event].Host): the id the master
// wrote in the region's host block ([Emitter.SetHost], or hostname, master
// pid and the region's creation time), which the workers read from there.
// A frame that came from another host carries that host's id (flagOrigin).
// The size limit is the local one: the frame with the host id must fit
// [Emitter.MaxFrame], or the emit returns [ErrTooLarge]. An event the
// backplane cannot take returns, after the local deliveries, an error
// wrapping [ErrNoBackplane] (none set) or [ErrBackplane] (its error: Redis
// down), counted in Stats.PublishFailed; never a silent drop. Events of one
// sender reach another host in emission order (one publisher per sender, a
// backplane that keeps the order of its Publish calls, one goroutine
// feeding FromBackplane).
//
// # The default emitter
//
// The package-level functions ([On], [Emit], [To], …) use [Default], made
// at its first use (not at init). cluster2.Listen adopts the default emitter
// as the Cluster's (cluster2.Cluster.Emitter) and attaches it, in every
// process: listeners registered with On before Listen stay registered and
// receive the cluster's events. The runtime itself uses the Cluster's
// emitter, never Default: [SetDefault] after Listen changes what the
// package-level functions reach, not what the cluster or its monitor use.
//
// # Region layout (format: changing it bumps the region version)
//
// The region [RegionName] is created by the master:
//
//	off+0    ┌──────────┬─────────┬─────────┬──────────┬────────────┬──────────┬────────┐
//	         │ magic u64│ version │ slots   │ ringCap  │ masterPid  │ armed    │ pad 32 │  64 B
//	         │          │ u32     │ u32     │ u32      │ u32 atomic │ Event(8) │        │
//	off+64   ├──────────┴─────────┴─────────┴──────────┴────────────┴──────────┴────────┤
//	         │ slot 0:  pid u32 │ gen u32 │ toWorker u64 │ toMaster u64 │ pad 40        │  64 B each
//	         │ slot 1:  …                                                             │
//	         │ slot slots-1                                                           │
//	         ├────────────────────────────────────────────────────────────────────────┤
//	         │ host block: hostLen u8 (1..255) │ host id, hostLen bytes          │ 256 B
//	         └─────────────────────────────────────────────────────────────────────────┘
//
// magic, version, slots, ringCap and the host block are written once in the
// region's init (published by the arena's region directory): a master that
// resumes the region after an in-place upgrade keeps its host id. masterPid is stored by the
// master when it attaches. A slot entry is written by the master only: the
// offsets of the slot's two rings (each [ring.Size](ringCap) bytes,
// allocated together on the slot's first use and kept for good), then pid,
// the worker the rings are armed for (0 → pid on AddWorker, pid → 0 on
// RemoveWorker or before a re-arm). The master stores pid after the offsets
// and after resetting both rings (release), then wakes armed; a worker waits
// on armed until its entry's pid is its own (acquire), then opens its ends.
// Slot 0 is the master's own and has no rings.
//
// # Frame format (format: changing it bumps the region version)
//
// Each event is one ring record of type 1 (recordEvent) whose payload is a
// frame:
//
//	┌────────────┬──────────┬────────────┬────────────┬─────────────────┬──────────────┬───────────┬──────────────────┐
//	│ sender u32 │ flags u8 │ nameLen u8 │ npids u16  │ pids npids×u32  │ flagOrigin:  │ name      │ args             │
//	│ pid        │ 1 master │ 1..255     │            │ explicit target │ hostLen u8,  │ nameLen B │ JSON array text, │
//	│            │ 2 workers│            │            │ pids            │ host id      │ UTF-8     │ the rest         │
//	│            │ 4 origin │            │            │                 │ (1..255 B)   │           │                  │
//	└────────────┴──────────┴────────────┴────────────┴─────────────────┴──────────────┴───────────┴──────────────────┘
//	  little-endian; 8-byte fixed header (FrameHeaderSize)
//
// The backplane carries the same frames: flagOrigin with the publishing
// host's id, no pids, no other flag. Two more record types serve a worker's
// event to AllHosts: recordHosts (2, worker → master: a u64 sequence, then
// the frame of its local targets) and recordAck (3, master → worker: the
// sequence, a code u8 — 0 published, 1 no backplane, 2 refused — and the
// error's text).
//
// A worker fills flags and pids with its remote targets (the master reads
// them to route); the master sends frames with no flags and no pids (the
// receiving worker is the target). A frame may take at most a quarter of the
// ring capacity ([Emitter.MaxFrame]; 64 KiB with the default 256 KiB rings):
// a larger event returns [ErrTooLarge] and is not sent.
//
// # Lifecycle of a slot
//
// The master calls AddWorker(pid, slot) after it starts a worker; the
// worker's Attach waits for it. When the worker dies its ring goes quiet:
// the master's reader notices the dead producer (within Options.PeerCheck),
// unblocks a record it died writing, delivers what it had committed, and
// marks the link dead (events to it are dropped and counted). RemoveWorker
// does the same at once, when the runtime reaps the process. Re-arming the
// slot for a successor resets both rings first, so a successor never reads
// its predecessor's events.
//
// # Caveats
//
// Arguments are JSON: a handler receives [Event].Args (a JSON array) and
// decodes it with [Event.Decode] or [Arg]; numbers decoded into any become
// float64, as with encoding/json. Args is shared by all listeners of the
// event and must not be modified. A handler that panics crashes its process,
// as any goroutine's panic does. Handlers of one listener run one at a time;
// handlers of different listeners run concurrently. The race detector does
// not see arena memory: the rings are proven by the ring package's tests and
// this package's cross-process tests.
package emitter
