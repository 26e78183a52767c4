package ring

import "time"

// Test hooks: nil or false in production; only this package's tests set them,
// before the ring is used.
var (
	// testHookReorder, when not nil, runs inside every commit by release
	// store between the (early) load of the consumer's sleeping flag and the
	// store of the header: the reordering x86-TSO allows, made to happen.
	testHookReorder func()

	// testHookSleep, when not nil, is called by Read just before each futex
	// sleep, with the sleep's bound.
	testHookSleep func(time.Duration)

	// testHookYield, when not nil, is called by a spinning end just before
	// each yield of its processor (spinWait).
	testHookYield func()

	// testUnfenced, when true, switches the protection against lost wake-ups
	// off (every commit by release store, every consumer sleep unbounded),
	// so that tests can show that they catch what it prevents.
	testUnfenced bool
)
