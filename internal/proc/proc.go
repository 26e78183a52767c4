package proc

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Environment variables a master sets for its workers.
const (
	// EnvSlot holds the worker's slot in the arena's process table. Its
	// presence is what makes a process a worker.
	EnvSlot = "CLUSTER2_WORKER_SLOT"

	// EnvMaster holds the master's pid.
	EnvMaster = "CLUSTER2_MASTER_PID"
)

// Descriptor numbers a worker inherits.
const (
	ListenerFD = 3 // the shared listening socket
	ArenaFD    = 4 // the arena's memfd
	DeathFD    = 5 // read end of the master's death pipe
)

// Self tells whether this process is a worker and, for a worker, its slot
// and master pid. A malformed EnvSlot is an error: a worker must not mistake
// itself for a master and start a second cluster.
func Self() (isWorker bool, slot, masterPid int, err error) {
	s, ok := os.LookupEnv(EnvSlot)
	if !ok {
		return false, 0, 0, nil
	}
	slot, err = strconv.Atoi(s)
	if err != nil || slot <= 0 {
		return true, 0, 0, fmt.Errorf("%s=%q is not a worker slot", EnvSlot, s)
	}
	masterPid, _ = strconv.Atoi(os.Getenv(EnvMaster))
	return true, slot, masterPid, nil
}

// WorkerEnv returns env without any variable of this protocol, plus the ones
// that make a child the worker of slot in the cluster of masterPid.
func WorkerEnv(env []string, slot, masterPid int) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if hasKey(kv, EnvSlot) || hasKey(kv, EnvMaster) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, EnvSlot+"="+strconv.Itoa(slot), EnvMaster+"="+strconv.Itoa(masterPid))
}

// Unsetenv removes this protocol's variables from the process environment, so
// that programs a worker runs are not mistaken for workers.
func Unsetenv() {
	os.Unsetenv(EnvSlot)
	os.Unsetenv(EnvMaster)
}

func hasKey(kv, key string) bool {
	return len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key
}

// SetNonblock puts the open file description behind fd in non-blocking mode.
func SetNonblock(fd int) error {
	return unix.SetNonblock(fd, true)
}

// IsNonblock reports whether the open file description behind fd is in
// non-blocking mode.
func IsNonblock(fd int) (bool, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return false, err
	}
	return fl&unix.O_NONBLOCK != 0, nil
}
