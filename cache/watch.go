package cache

import (
	"sync"
	"sync/atomic"
	"time"
)

// Op says what happened to a key.
type Op uint8

// The changes a watcher is told of.
const (
	OpSet    Op = opSet    // a value was stored (Value holds it)
	OpDel    Op = opDel    // the key was deleted
	OpExpire Op = opExpire // the key's time to live ran out
	OpEvict  Op = opEvict  // the key was evicted to make room

	// OpLost tells a watcher that it missed changes: Lost of them (at least
	// one) happened after the changes it was told before and before the ones
	// it is told after. Its queue was full (its callback was too slow),
	// this process's journal reader was lapped, or a process died inside a
	// change (between changing the index and journalling it: the shard's
	// repair tells every watcher). Key is the watched key (""
	// for a watcher of every key); Value is nil. A watcher that mirrors keys
	// re-reads them.
	OpLost Op = 16
)

// watchQueue is the number of changes a watcher may have waiting for its
// callback; past it, changes are dropped, counted and told (OpLost). It is
// generous (a full queue holds about 1.5 MB besides the values, which every
// watcher shares) so that a healthy watcher scheduled late in a burst of
// writes loses nothing: 1024 lost changes of a 3000-set burst on a loaded
// 2-core host.
const watchQueue = 16384

// watchQueueBytes bounds the values a watcher's queue holds (each change's
// Value is a copy): past it, changes are dropped as for a full queue, so
// that a stuck callback costs at most this much memory (16384 values of
// MaxValueLen would be gigabytes). A change is always queued into an empty
// queue, whatever its size.
const watchQueueBytes = 64 << 20

// watchStopWait bounds how long Space.Close waits for watcher callbacks that
// are running.
const watchStopWait = 250 * time.Millisecond

// String returns "set", "del", "expire", "evict" or "lost".
func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDel:
		return "del"
	case OpExpire:
		return "expire"
	case OpEvict:
		return "evict"
	case OpLost:
		return "lost"
	}
	return "unknown"
}

// Change is what a watcher is told: the key, what happened, and for OpSet the
// value stored. Value is shared by every watcher of the change: do not modify
// it.
type Change struct {
	Cache string
	Key   string
	Op    Op
	Value []byte // nil unless Op is OpSet
	Lost  uint64 // OpLost: how many changes the watcher missed (at least 1)
}

// Deleted reports whether the key has no value after the change: OpDel,
// OpExpire or OpEvict. OpLost is not a deletion: the key's state is unknown.
func (c Change) Deleted() bool { return c.Op == OpDel || c.Op == OpExpire || c.Op == OpEvict }

// Watcher is the handle Watch returns, for Unwatch and Lost.
type Watcher struct {
	c   *Cache
	key string
	fn  func(Change)

	mu      sync.Mutex
	q       []Change // waiting for fn, oldest first; at most watchQueue
	qbytes  int      // the values' bytes in q; at most watchQueueBytes (but for q's first)
	dropped uint64   // changes dropped since the last OpLost was queued
	lost    atomic.Uint64
	wake    chan struct{} // capacity 1: something was queued
	gone    chan struct{} // closed by Unwatch
	once    sync.Once
}

// Lost returns how many changes this watcher missed (see OpLost).
func (w *Watcher) Lost() uint64 { return w.lost.Load() }

// Watch calls fn in this process after every successful Set, Del, expiry and
// eviction of key by any process of the cluster (every key of the cache if key
// is ""), in the order they happened for each key. A Set refused by
// LeaveIfNotNull and reads call nothing. Watching starts at the next change.
//
// Each watcher has its own goroutine and a queue of 16384 changes and 64 MiB
// of values: a slow or blocked fn delays only its own watcher (fns of
// different watchers may run at the same time). When its queue is full, the
// watcher's further changes
// are dropped and counted (Watcher.Lost, Stats.WatchLost), and once there is
// room fn is told with one OpLost change, in order: everything before it was
// delivered, everything after it will be. Space.Close waits at most 250 ms
// for running callbacks; a callback still running then is left to finish,
// and its watcher is told nothing more. Closing c (Cache.Close) unwatches
// the watchers made with it; a closed c watches nothing.
func (c *Cache) Watch(key string, fn func(Change)) *Watcher {
	sp := c.sp
	w := &Watcher{c: c, key: key, fn: fn, wake: make(chan struct{}, 1), gone: make(chan struct{})}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if c.isClosed() { // under mu: a Close that unwatches has not run yet, or this is seen
		w.once.Do(func() { close(w.gone) })
		return w
	}
	byKey := sp.watchers[c.id]
	if byKey == nil {
		byKey = map[string][]*Watcher{}
		sp.watchers[c.id] = byKey
	}
	byKey[key] = append(byKey[key], w)
	if sp.nwatch[c.id] == 0 {
		sp.jr.h.watchers[c.id].Add(1) // from now on writers journal this cache
	}
	sp.nwatch[c.id]++
	if !sp.closed.Load() {
		sp.watchDone.Add(1)
		go func() {
			defer sp.watchDone.Done()
			w.run(sp.stop)
		}()
	}
	if !sp.tailing {
		sp.tailing = true
		sp.bgDone.Add(1)
		from := sp.jr.h.tail.Load() // watching starts with the next change
		go func() {
			defer sp.bgDone.Done()
			sp.tailJournal(from, sp.stop)
		}()
	}
	return w
}

// Unwatch stops w: its callback is not called again once a running call
// returns (changes queued for it are dropped, uncounted).
func (c *Cache) Unwatch(w *Watcher) {
	sp := c.sp
	w.once.Do(func() { close(w.gone) })
	sp.mu.Lock()
	defer sp.mu.Unlock()
	list := sp.watchers[c.id][w.key]
	for i, x := range list {
		if x == w {
			sp.watchers[c.id][w.key] = append(list[:i:i], list[i+1:]...)
			sp.nwatch[c.id]--
			if sp.nwatch[c.id] == 0 {
				sp.jr.h.watchers[c.id].Add(-1)
			}
			return
		}
	}
}

// unwatchAll stops every watcher made with handle c (Close).
func (c *Cache) unwatchAll() {
	sp := c.sp
	var mine []*Watcher
	sp.mu.Lock()
	for _, list := range sp.watchers[c.id] {
		for _, w := range list {
			if w.c == c {
				mine = append(mine, w)
			}
		}
	}
	sp.mu.Unlock()
	for _, w := range mine {
		c.Unwatch(w)
	}
}

// push queues ch for w's callback without ever waiting: a full queue drops
// it and counts the loss. drop says the change was lost before it reached
// us (the journal reader was lapped, and counted it): w is only told.
func (w *Watcher) push(ch Change, drop bool) {
	sp := w.c.sp
	w.mu.Lock()
	full := len(w.q) >= watchQueue || len(w.q) > 0 && w.qbytes+len(ch.Value) > watchQueueBytes
	if !drop && !full && w.dropped > 0 {
		w.q = append(w.q, Change{Cache: w.c.name, Key: w.key, Op: OpLost, Lost: w.dropped})
		w.dropped = 0
		full = len(w.q) >= watchQueue // the OpLost took the last place
	}
	if drop || full {
		w.dropped++
		w.mu.Unlock()
		w.lost.Add(1)
		if !drop {
			sp.watchLost.Add(1)
		}
		w.signal()
		return
	}
	w.q = append(w.q, ch)
	w.qbytes += len(ch.Value)
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next returns the change for w's next callback, waiting for one; false
// once w was unwatched or the space stopped.
func (w *Watcher) next(stop <-chan struct{}) (Change, bool) {
	for {
		select {
		case <-stop:
			return Change{}, false
		case <-w.gone:
			return Change{}, false
		default:
		}
		w.mu.Lock()
		switch {
		case len(w.q) > 0:
			ch := w.q[0]
			w.q[0] = Change{}
			w.q = w.q[1:]
			w.qbytes -= len(ch.Value)
			if len(w.q) == 0 {
				w.q = w.q[:0:0] // let the backing array go rather than creep forward forever
			}
			w.mu.Unlock()
			return ch, true
		case w.dropped > 0:
			ch := Change{Cache: w.c.name, Key: w.key, Op: OpLost, Lost: w.dropped}
			w.dropped = 0
			w.mu.Unlock()
			return ch, true
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.gone:
		case <-stop:
		}
	}
}

// run calls w's callback for every change queued for it, in order, until w
// is unwatched or the space stops.
func (w *Watcher) run(stop <-chan struct{}) {
	for {
		ch, ok := w.next(stop)
		if !ok {
			return
		}
		w.fn(ch)
	}
}

// dispatch queues one change for every local watcher of its key.
func (sp *Space) dispatch(ch change) {
	sp.mu.Lock()
	byKey := sp.watchers[ch.id]
	fns := append(append([]*Watcher(nil), byKey[ch.key]...), byKey[""]...)
	c := sp.caches[ch.id]
	sp.mu.Unlock()
	if len(fns) == 0 || c == nil {
		return
	}
	out := Change{Cache: c.name, Key: ch.key, Op: Op(ch.op), Value: ch.val}
	if ch.op == opSet && ch.noValue {
		out.Value, _, _ = c.GetInto(nil, ch.key) // too large for the journal: read it now
	}
	if out.Op == OpSet && out.Value == nil {
		out.Value = []byte{}
	}
	for _, w := range fns {
		w.push(out, false)
	}
}

// lapped tells every local watcher that this process's journal reader lost
// changes (it was lapped, or read a record it could not parse); the loss is
// counted once in Stats.WatchLost by the reader.
func (sp *Space) lapped() {
	sp.mu.Lock()
	var all []*Watcher
	for _, byKey := range sp.watchers {
		for _, list := range byKey {
			all = append(all, list...)
		}
	}
	sp.mu.Unlock()
	for _, w := range all {
		w.push(Change{}, true)
	}
}
