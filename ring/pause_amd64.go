package ring

// cpuPause executes n PAUSE instructions (n > 0): a spin-wait hint that lets
// the core slow the loop down and give way to its sibling thread.
//
//go:noescape
func cpuPause(n uint32)
