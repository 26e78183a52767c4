package emitter

import (
	"context"
	"sync/atomic"
)

// def is the process's default emitter, made at its first use (Default),
// not at init: a program that never uses it never makes one.
var def atomic.Pointer[Emitter]

// Default returns the process's default emitter, which the package-level
// functions use; the first call makes it (New with no options). Until a
// cluster attaches it it delivers within the process only. cluster2.Listen
// adopts it as the Cluster's emitter (Cluster.Emitter) and attaches it, in
// every process: listeners registered on it before Listen, or before any
// emitter existed, stay registered and receive the cluster's events.
func Default() *Emitter {
	if em := def.Load(); em != nil {
		return em
	}
	em := mustNew() // an unattached emitter holds no goroutine: the loser of a race is garbage
	if def.CompareAndSwap(nil, em) {
		return em
	}
	return def.Load()
}

// SetDefault makes em the process's default emitter. Listeners of the
// previous default are not moved. Called before cluster2.Listen, it chooses
// the emitter Listen adopts; after, it changes what the package-level
// functions use, not the Cluster's emitter. It is for tests and for
// programs that build their own cluster.
func SetDefault(em *Emitter) {
	if em == nil {
		panic("emitter: SetDefault(nil)")
	}
	def.Store(em)
}

// On registers fn on the default emitter; see Emitter.On.
func On(name string, fn func(Event)) *Listener { return Default().On(name, fn) }

// Once registers fn for one event on the default emitter; see Emitter.Once.
func Once(name string, fn func(Event)) *Listener { return Default().Once(name, fn) }

// Off removes a listener of whichever emitter it was registered on.
func Off(l *Listener) {
	if l != nil {
		l.em.Off(l)
	}
}

// RemoveAll removes every listener of name from the default emitter.
func RemoveAll(name string) { Default().RemoveAll(name) }

// Emit emits on the default emitter to the default targets; see
// Emitter.Emit.
func Emit(name string, args ...any) error { return Default().Emit(name, args...) }

// EmitContext is Emit bounded by ctx; see Emitter.EmitContext.
func EmitContext(ctx context.Context, name string, args ...any) error {
	return Default().EmitContext(ctx, name, args...)
}

// To returns a Sender of the default emitter for targets; see Emitter.To.
func To(targets ...Target) Sender { return Default().To(targets...) }
