//go:build linux

package shm_test

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/cluster2/cluster2/shm"
)

// A pid recorded with its start time names one process: once it is gone,
// ProcessAlive says so even if the pid is given to another process.
func ExampleProcessAlive() {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		fmt.Println(err)
		return
	}
	pid := cmd.Process.Pid
	start, err := shm.ProcessStartTime(pid) // recorded while it runs (or is a zombie)
	cmd.Wait()
	fmt.Println("start time read:", err == nil && start != 0)
	fmt.Println("after exit:", shm.ProcessAlive(pid, start))
	self, _ := shm.ProcessStartTime(os.Getpid())
	fmt.Println("this process:", shm.ProcessAlive(os.Getpid(), self))
	// Output:
	// start time read: true
	// after exit: false
	// this process: true
}
