// Package faults holds fault-injection hooks for cluster2's own chaos tests
// (internal/soak). Every hook is nil in a real program; being internal, no
// user of the module can set one.
package faults

// BeforeSync, if set, is called by the persistence manager (package persist)
// after it wrote log entries and before the fdatasync that makes them
// durable: the soak kills the manager there.
var BeforeSync func()
