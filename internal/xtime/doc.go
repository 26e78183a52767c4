// Package xtime holds cluster2's one way to wait a while unless told to stop,
// so that every back-off, retry and poll in the tree sleeps the same way:
//
//   - [Sleep] waits a duration or until a done channel closes (a master's or
//     a server's stop channel, a context's Done);
//   - [SleepCtx] is Sleep under a context and returns the context's error
//     when it ended first;
//   - [Bound] shortens one bounded wait (a futex sleep, a poll) to a
//     context's deadline.
//
// A sleep uses one timer, stopped on return: no timer outlives it. Sleep
// does not spin and holds no lock; a sleep of zero or less returns at once
// (true), unless done is already closed, which Sleep may report either way.
// Waits that select on more than a stop signal (a child's exit, a reply)
// stay selects of their own.
//
// The package imports only the standard library, so the lowest packages
// (shm, ring) may use it; it is internal: users do not call it.
package xtime
