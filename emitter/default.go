package emitter

import (
	"context"
	"sync/atomic"
)

// def is the process's default emitter: the seed's module-level emitter.
var def atomic.Pointer[Emitter]

func init() { def.Store(mustNew()) }

// Default returns the process's default emitter, which the package-level
// functions use. Until the runtime attaches it (cluster2.Listen does, in
// every process) it delivers within the process only; listeners registered
// on it before then stay registered.
func Default() *Emitter { return def.Load() }

// SetDefault makes em the process's default emitter. Listeners of the
// previous default are not moved: the runtime attaches the existing default
// rather than replacing it; SetDefault is for tests and for programs that
// build their own cluster.
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
