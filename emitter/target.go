package emitter

import "strconv"

type targetKind uint8

const (
	kindPid targetKind = iota
	kindSelf
	kindMaster
	kindWorkers
	kindAllHosts
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
	// AllHosts is every process of every host: this host's master and
	// workers (the emitting process included, delivered locally, once) and,
	// through the backplane (Emitter.SetBackplane: package bridge's Redis
	// pub/sub in a cluster2 program), the master and every worker of each
	// other host. Handlers see the host of origin in Event.Host. An event
	// the backplane cannot take (none set, Redis down, too large) returns an
	// error wrapping ErrNoBackplane, ErrBackplane or ErrTooLarge after the
	// local deliveries; from a worker, Emit waits for its master to answer
	// whether it published.
	AllHosts = Target{kind: kindAllHosts}
)

// Pid names one process of the cluster by pid: the master, a worker, or the
// emitting process itself. A pid that names no live process of the cluster
// is dropped and counted in Stats.Dropped (of the process that finds it
// unknown: the master, for a worker's event to another worker).
func Pid(pid int) Target { return Target{kind: kindPid, pid: pid} }

// String returns "self", "master", "workers", "all-hosts" or the pid.
func (t Target) String() string {
	switch t.kind {
	case kindSelf:
		return "self"
	case kindMaster:
		return "master"
	case kindWorkers:
		return "workers"
	case kindAllHosts:
		return "all-hosts"
	}
	return strconv.Itoa(t.pid)
}

// route is a resolved set of targets.
type route struct {
	self, master, workers bool
	hosts                 bool  // AllHosts: published to the backplane (by the master)
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
