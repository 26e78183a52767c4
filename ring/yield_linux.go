package ring

import "syscall"

// osYield gives this thread's processor to another runnable thread, if the
// kernel has one (sched_yield(2)); it returns at once otherwise.
func osYield() { syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
