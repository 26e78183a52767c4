package bridge

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/cluster2/cluster2/emitter"
)

// EventsChannel is the pub/sub channel of events across hosts: Namespace +
// "events". The hosts of a fleet share it exactly when they share Redis and
// Namespace.
func (b *Bridge) EventsChannel() string { return b.cfg.Namespace + "events" }

// EventsQueue is how many messages of other hosts may wait for the emitter
// (Events): more are dropped, counted in EventStats.Dropped and logged.
const EventsQueue = 4096

// Events is the emitter's backplane (emitter.Backplane) on a bridge: the
// master's emitter publishes its events to emitter.AllHosts (its own and its
// workers') on the bridge's EventsChannel, and every message on that channel
// is handed to the emitter's FromBackplane, which delivers another host's
// event to this host's processes and drops this host's own by their origin.
//
// Delivery is Redis pub/sub's: at most once, to the hosts whose bridge is
// subscribed at the time (a host whose tracking connection is down misses
// what is published meanwhile; nothing replays it). Publish returning nil
// means Redis took the message, not that every host handled it. While Redis
// is down Publish fails at once with an error wrapping ErrRedisDown, which
// the emitter returns to the sender wrapped in emitter.ErrBackplane.
//
// Messages from the channel reach the emitter through a queue of
// EventsQueue messages and a goroutine of their own, in the order Redis
// sent them: the bridge's connection goroutine never waits for a worker's
// full ring (its invalidations would wait behind it).
//
// On a Redis Cluster this would be sharded pub/sub: SPUBLISH and SSUBSCRIBE
// on the same channel name, which lives on the shard of its hash slot, so
// that a message is not broadcast over the cluster bus to every node as a
// PUBLISH is. One channel means one shard carries every event; a fleet whose
// events outgrow it would spread them over several channels (one per hash
// tag) and subscribe to all. Only plain PUBLISH/SUBSCRIBE is built.
type Events struct {
	b      *Bridge
	em     *emitter.Emitter
	ch     string
	q      chan []byte
	cancel func()
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when run returned
	once   sync.Once

	received, dropped, bad atomic.Uint64
}

// EventStats counts what Events did since it was made.
type EventStats struct {
	Received uint64 `json:"received"` // messages of the events channel (this host's echoes included)
	Dropped  uint64 `json:"dropped"`  // messages dropped because the queue was full
	Bad      uint64 `json:"bad"`      // messages the emitter refused (not an event of a host, or a worker missed it)
}

// ConnectEvents makes a backplane of b for em, the master's emitter
// (em.SetBackplane), and subscribes it to b's EventsChannel. b must track
// (Track): its subscriptions ride on the tracking connection and are made
// again on every reconnect. Close disconnects it.
func ConnectEvents(b *Bridge, em *emitter.Emitter) *Events {
	e := &Events{b: b, em: em, ch: b.EventsChannel(), q: make(chan []byte, EventsQueue),
		stop: make(chan struct{}), done: make(chan struct{})}
	go e.run()
	e.cancel = b.Subscribe(e.ch, e.enqueue)
	em.SetBackplane(e)
	return e
}

// Publish sends msg, one encoded event, on the events channel (see
// emitter.Backplane).
func (e *Events) Publish(ctx context.Context, msg []byte) error {
	return e.b.Publish(ctx, e.ch, msg)
}

// enqueue is the subscription's callback (the bridge's goroutine): it never
// waits.
func (e *Events) enqueue(msg []byte) {
	select {
	case <-e.stop:
		return
	default:
	}
	e.received.Add(1)
	select {
	case e.q <- msg: // the bridge makes msg for its subscriber, and FromBackplane keeps none of it
	default:
		if n := e.dropped.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th, … drop
			e.b.log.Warn("bridge: events from other hosts dropped: the emitter's queue is full", "dropped", n)
		}
	}
}

// run hands the queued messages to the emitter until Close, then those
// still queued.
func (e *Events) run() {
	defer close(e.done)
	for {
		select {
		case msg := <-e.q:
			e.deliver(msg)
		case <-e.stop:
			for {
				select {
				case msg := <-e.q:
					e.deliver(msg)
				default:
					return
				}
			}
		}
	}
}

func (e *Events) deliver(msg []byte) {
	if err := e.em.FromBackplane(msg); err != nil {
		e.bad.Add(1)
		e.b.log.Warn("bridge: an event from another host", "err", err)
	}
}

// Stats returns the counters.
func (e *Events) Stats() EventStats {
	return EventStats{Received: e.received.Load(), Dropped: e.dropped.Load(), Bad: e.bad.Load()}
}

// Close unsubscribes, removes the backplane from the emitter (its events to
// AllHosts then fail with emitter.ErrNoBackplane), and waits until the
// queued messages were handed to it.
func (e *Events) Close() {
	e.once.Do(func() {
		e.em.SetBackplane(nil)
		e.cancel()
		close(e.stop)
		<-e.done
	})
}
