//go:build !linux

package ring

import "runtime"

// osYield gives way to other goroutines where the ring has no sched_yield.
func osYield() { runtime.Gosched() }
