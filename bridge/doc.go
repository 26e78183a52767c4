// Package bridge is a host's bridge to Redis: the second tier of the
// distributed caches and the backplane between the hosts of a fleet (several
// clusters behind a load balancer, each on its own machine, sharing one
// Redis).
//
// # One bridge per host, in the master
//
// The master opens a Bridge and calls Track: the bridge holds one
// connection of its own (a rueidis dedicated connection, RESP3) with
//
//	CLIENT TRACKING ON BCAST PREFIX <Namespace><cache>: ...
//
// for every distributed cache (Config.Caches). Redis then pushes an
// invalidation on that connection for every key under those prefixes that
// any client changes, deletes, expires or evicts: a redis-cli SET as much
// as another host's write. The bridge turns each into Target.Invalidate,
// which the runtime maps to the arena (the key is deleted, or marked stale
// when its cache serves stale values); every process of the host sees it
// at once, as any delete. Workers never track: the rule "one bridge per
// host" is about this connection. Every process (workers included) still
// has its own client (Open without Track: StateClient) for the GETs of its
// misses and its writes; rueidis pipelines them automatically.
//
// BCAST without NOLOOP: NOLOOP only spares the connection that wrote, and
// the writes come from the workers' connections, never the tracking one,
// so it would change nothing. Our own writes therefore come back as
// invalidations too, which is what makes the arena safe: see the package
// cache's Invalidate and docs/cache.md ("Distributed caches").
//
// # One load in the fleet (Config.FleetLoad)
//
// Loader-once is per host (the arena's loading record). With FleetLoad a
// miss that Redis cannot answer also takes a lock in Redis before the
// user's loader runs, so that one host of the fleet loads and the others
// wait for its value (loadlock.go: the key, the token, the bounded wait,
// what a crash leaves). It is cache.LoadLocker's LockLoad.
//
// # Recovery
//
// Redis forgets a client's tracking with its connection (redis/redis
// #11767), and nothing tells a client what it missed. So on a lost
// connection (rueidis closes the dedicated connection's hooks) or a PING
// that fails (every PingEvery, bounded by Timeout) the bridge calls
// Target.InvalidateAll at once: every distributed entry is marked stale —
// served as fail-safe up to its cache's limit, never trusted as fresh — and
// the bridge reconnects with a back-off of 100 ms doubling to 2 s. A new
// connection tracks again, subscribes again, PINGs, and only then calls
// InvalidateAll once more (what was loaded while no invalidation could
// arrive is revalidated) and reports StateUp. A FLUSHALL (an invalidation
// of everything, nil keys) is InvalidateAll too.
//
// The workers' clients do not wait for the tracking connection: a Redis
// that is back answers their GETs at once, up to 2 s before the master
// tracks again. So Target.Tracking brackets the time invalidations arrive
// (on after the new connection's InvalidateAll, off before the lost one's),
// and the cache space keeps a tracking epoch in the arena
// (cache.Space.BeginTracking): a load that did not read Redis inside one
// epoch keeps its value only stale. No value read while the host was not
// tracking is ever served as fresh, and the fail-safe serves one at most
// FailSafeFor after it was read. A tracking connection that answers again
// also ends the 250 ms in which commands fail fast after an error.
//
// Nothing of this is in a hit's path: a hit reads the arena. A Redis that is
// down at Open is no error: the bridge reports StateConnecting and keeps
// trying.
//
// # Tag sets
//
// A tagged value's key is a member of one Redis set per tag
// (<Namespace><cache>#<tag>), which InvalidateTag reads (SMEMBERS), unlinks
// and empties of what it unlinked. A set lives as long as its longest-lived
// member may, and no longer: a Set stores the value and files it under its
// tags in one Lua script (EVALSHA, one round trip, atomic), which makes the
// set persistent for a member without TTL, gives a set that holds only this
// member exactly the member's TTL, and otherwise extends the set's expiry
// to at least the member's (PEXPIRE GT: never shortened, and a persistent
// set stays persistent). So a fleet writing short-lived tagged keys leaves
// no sets behind once they expired. Members whose keys expired or were
// deleted stay in a set that outlives them (a persistent one, or one a
// longer-lived member extends) until an InvalidateTag of the tag: pruning
// them on the write path would cost a scan of the set. The script needs
// Redis 7.0 or later (PEXPIRE GT; SET NX GET needs it too): the tracking
// connection checks INFO's redis_version when it connects, and an older
// Redis keeps the bridge down with ErrRedisTooOld (Stats.Error, the log)
// rather than half working. A tag set that
// refuses its member (a key that is no set) leaves the value stored and
// the Set returns Redis's error.
//
// # Pub/sub
//
// Publish and Subscribe carry messages between hosts through Redis's
// pub/sub on the same tracking connection (RESP3 lets a connection track
// and subscribe at once): at most once, to the hosts connected now.
// Subscriptions are made again on every reconnect; what was published
// meanwhile is lost.
// Events (events.go) is the emitter's backplane on them: the master's
// events to emitter.AllHosts go out on Namespace+"events", and what comes in
// is handed to the emitter, which delivers it to the host's processes.
//
// # Why rueidis
//
// github.com/redis/rueidis speaks RESP3 natively; a dedicated connection
// takes CLIENT TRACKING in BCAST mode with prefixes, hands its invalidation
// pushes to a hook (SetOnInvalidations) next to its pub/sub hooks, and
// closes the hooks' error channel when the connection is lost — exactly the
// signal recovery needs. Its other connections pipeline the concurrent
// commands of many goroutines automatically. go-redis/v9 (in go.mod as a
// benchmark peer only) has push-notification handlers in 9.x, registered
// per client rather than per connection; we did not check how it tells a
// handler that a tracking connection was lost, which rueidis documents.
// No speed figure decided it.
package bridge
