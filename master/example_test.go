package master_test

import (
	"fmt"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/worker"
)

// ExampleDefaultShouldKill shows the bad-GC rule: requests/s fell more than
// 10% below the worker's peak while cpu, memory and GC pause all rose.
func ExampleDefaultShouldKill() {
	kill := master.DefaultShouldKill(72 * time.Hour)
	peak := worker.Heartbeat{Pid: 1, RPS: 50, CPU: 40, RSS: 100 << 20, GCPause: time.Millisecond}
	worse := func(rps float64) worker.Heartbeat {
		return worker.Heartbeat{Pid: 1, RPS: rps, CPU: 60, RSS: 150 << 20, GCPause: 3 * time.Millisecond}
	}
	fmt.Println(kill(peak), kill(worse(48)), kill(worse(40)))
	// Output: false false true
}
