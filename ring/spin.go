package ring

// spinPause is how many PAUSE instructions a waiting end executes between two
// re-checks of the ring (about 20 ns here): a re-check of a line that the
// other end is writing takes that line from it, and a waiter that re-checks
// back to back slows the writer it waits for (64-byte records: 22-24 against
// 26-31 ns per record with back-to-back re-checks).
const spinPause = 2

// A waiting end that has re-checked spinYieldAfter times without finding
// what it waits for gives its processor away (sched_yield(2)) at every
// spinYieldEvery-th re-check after that, instead of pausing. A spin only pays
// while the other end runs on another processor; when both ends share one
// (fewer free processors than ends: a loaded machine, a VM's vCPUs taken by
// other work) the spinner holds the processor its peer needs until the
// kernel's tick preempts it, milliseconds. A yield lets a runnable peer run
// at once, and returns at once when nothing else is runnable. 64-byte
// records through a 64 KiB ring (BenchmarkRingThroughput on the 2-vCPU AMD
// EPYC VM, load average 3.3-7 from other work, interleaved runs, ns per
// record): ring 194-351 without the yields (perf: 63% of the CPU in the
// spins' PAUSEs), 48-85 with them (16 re-checks before the first yield;
// 55-140 with 64); ring-1cpu, both ends' threads pinned to one processor,
// 383-401 against 43-99. Each re-check before the first yield costs about
// 70 ns here, time in which a peer that shares the processor cannot run.
const (
	spinYieldAfter = 16
	spinYieldEvery = 16
)

// spinWait is what a spinning end does after its i-th re-check (counting
// from 0) failed: pause, or yield its processor (see spinYieldAfter).
func spinWait(i int) {
	if i >= spinYieldAfter && i%spinYieldEvery == 0 {
		if testHookYield != nil {
			testHookYield()
		}
		osYield()
		return
	}
	cpuPause(spinPause)
}
