package cache

// Op says what happened to a key.
type Op uint8

// The changes a watcher is told of.
const (
	OpSet    Op = opSet    // a value was stored (Value holds it)
	OpDel    Op = opDel    // the key was deleted
	OpExpire Op = opExpire // the key's time to live ran out
	OpEvict  Op = opEvict  // the key was evicted to make room
)

// String returns "set", "del", "expire" or "evict".
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
}

// Deleted reports whether the key has no value after the change.
func (c Change) Deleted() bool { return c.Op != OpSet }

// Watcher is the handle Watch returns, for Unwatch.
type Watcher struct {
	c   *Cache
	key string
	fn  func(Change)
}

// Watch calls fn in this process after every successful Set, Del, expiry and
// eviction of key by any process of the cluster (every key of the cache if key
// is ""), in the order they happened for each key. A Set refused by
// LeaveIfNotNull and reads call nothing. fn runs on the space's one watch
// goroutine: a slow fn delays the watchers that follow it. Watching starts at
// the next change.
func (c *Cache) Watch(key string, fn func(Change)) *Watcher {
	sp := c.sp
	w := &Watcher{c: c, key: key, fn: fn}
	sp.mu.Lock()
	defer sp.mu.Unlock()
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

// Unwatch stops w. Changes already being dispatched may still reach it.
func (c *Cache) Unwatch(w *Watcher) {
	sp := c.sp
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

// dispatch runs the local watchers of one change.
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
		w.fn(out)
	}
}
