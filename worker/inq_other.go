//go:build !linux

package worker

import "time"

// inQueue cannot look into a receive queue here (cluster2 runs on Linux; a
// Listen elsewhere fails with ErrNotSupported): it reports none.
func inQueue(uintptr) int { return 0 }

// listenQueue cannot look into the accept queue here: it reports none.
func listenQueue() int { return 0 }

// preciseSleep is time.Sleep here.
func preciseSleep(d time.Duration) { time.Sleep(d) }
