package emitter

import "strconv"

type targetKind uint8

const (
	kindPid targetKind = iota
	kindSelf
	kindMaster
	kindWorkers
)

// Target names who receives an event: [Self], [Master], [Workers] or one
// process by [Pid]. The zero value is Pid(0), which names nobody (it is
// dropped and counted). A Target is a small value: copy it freely.
type Target struct {
	kind targetKind
	pid  int
}

// The symbolic targets.
var (
	// Self is the emitting process.
	Self = Target{kind: kindSelf}
	// Master is the cluster's master (from the master: itself).
	Master = Target{kind: kindMaster}
	// Workers is every worker of the cluster. From a worker it includes the
	// worker itself (delivered locally, once).
	Workers = Target{kind: kindWorkers}
)

// Pid names one process of the cluster by pid: the master, a worker, or the
// emitting process itself. A pid that names no live process of the cluster
// is dropped and counted in Stats.Dropped (of the process that finds it
// unknown: the master, for a worker's event to another worker).
func Pid(pid int) Target { return Target{kind: kindPid, pid: pid} }

// String returns "self", "master", "workers" or the pid.
func (t Target) String() string {
	switch t.kind {
	case kindSelf:
		return "self"
	case kindMaster:
		return "master"
	case kindWorkers:
		return "workers"
	}
	return strconv.Itoa(t.pid)
}

// route is a resolved set of targets.
type route struct {
	self, master, workers bool
	pids                  []int // explicit pids, other than this process and the master, deduplicated
}

func (r *route) addPid(pid int) {
	for _, p := range r.pids {
		if p == pid {
			return
		}
	}
	r.pids = append(r.pids, pid)
}
