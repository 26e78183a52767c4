package emitter

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Listener is the handle of a handler registered with On or Once; pass it to
// Off. Go funcs are not comparable, so the handle replaces the Node original's
// removeListener(fn). Its zero value is not usable; it may be copied as a
// pointer and is safe for concurrent use.
type Listener struct {
	em   *Emitter
	name string
	fn   func(Event)
	once bool

	fired    atomic.Bool // once: an event was handed to it
	off      atomic.Bool // no call starts once set
	quit     chan struct{}
	quitOnce sync.Once

	// The mailbox: events waiting for the handler's goroutine, in order.
	mu    sync.Mutex
	q     []Event
	spare []Event
	limit int
	wake  chan struct{} // cap 1: work is queued
	space chan struct{} // cap 1: a full queue was emptied
}

// Name returns the event the listener listens to.
func (l *Listener) Name() string { return l.name }

func newListener(em *Emitter, name string, fn func(Event), once bool) *Listener {
	return &Listener{em: em, name: name, fn: fn, once: once, limit: em.opts.QueueLen,
		quit: make(chan struct{}), wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// stop makes sure no call starts any more and ends the listener's goroutine.
func (l *Listener) stop() {
	l.off.Store(true)
	l.quitOnce.Do(func() { close(l.quit) })
}

// push queues ev for the handler, waiting while the queue holds limit events
// at most until w's context ends. A listener stopped meanwhile takes nothing
// (nil).
func (l *Listener) push(w waiter, ev Event) error {
	l.mu.Lock()
	for len(l.q) >= l.limit {
		l.mu.Unlock()
		ctx := w.waitCtx()
		select {
		case <-l.space:
		case <-l.quit:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("emitter: deliver %q: %w: %w", l.name, ErrQueueFull, ctx.Err())
		}
		l.mu.Lock()
	}
	l.q = append(l.q, ev)
	first := len(l.q) == 1
	l.mu.Unlock()
	if first {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// run is the listener's goroutine: it calls the handler for every queued
// event, in order, until the listener stops (a Once listener stops after its
// one call).
func (l *Listener) run() {
	for {
		select {
		case <-l.wake:
		case <-l.quit:
			return
		}
		l.mu.Lock()
		batch := l.q
		l.q, l.spare = l.spare, nil
		l.mu.Unlock()
		select { // a pusher waiting for room may go on
		case l.space <- struct{}{}:
		default:
		}
		for i := range batch {
			if l.off.Load() {
				return
			}
			l.fn(batch[i])
			if l.once {
				l.stop()
				return
			}
		}
		clear(batch) // drop references to arguments
		l.mu.Lock()
		l.spare = batch[:0]
		l.mu.Unlock()
	}
}
