package proc

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Role is what a process of a cluster is. Its value is also what the process
// stores in its slot of the arena's process table (shm.SlotInfo.Role); 1 is
// left to tools that join the arena for a while. Each role but the worker's
// has one fixed slot (see [Role.Slot]).
type Role uint32

// The roles of a cluster's processes.
const (
	// RoleMaster is the process the user started: no protocol variable is
	// set in its environment. It holds slot 0.
	RoleMaster Role = 0

	// RoleWorker is a worker: a slot between the master's and the
	// auxiliary one, chosen by the master.
	RoleWorker Role = 2

	// RoleCacheManager is the cache manager of Cache.Mode standalone, the
	// cluster's auxiliary process: it holds the last slot.
	RoleCacheManager Role = 3

	// RoleCheck is a new binary run to be checked before it replaces
	// anything (cluster2.Check): its cluster2.Listen writes the build's
	// information as one JSON line to CheckFD and exits 0, having created
	// nothing. It joins no arena and holds no slot (the slot variable is
	// set, to 0, and not read).
	RoleCheck Role = 4
)

// String returns "master", "worker", "cache-manager", "check" (the role
// variable's values), or "role(n)" for another value.
func (r Role) String() string {
	if name, ok := roleNames[r]; ok {
		return name
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

var roleNames = map[Role]string{RoleMaster: "master", RoleWorker: "worker", RoleCacheManager: "cache-manager", RoleCheck: "check"}

// Slot returns r's fixed slot in a process table of n slots: 0 for the
// master, n-1 (the auxiliary slot) for the cache manager, and -1 for a worker
// or an unknown role (the master picks a worker's among the slots SlotRole
// gives to workers).
func (r Role) Slot(n int) int {
	switch r {
	case RoleMaster:
		return 0
	case RoleCacheManager:
		return n - 1
	}
	return -1
}

// SlotRole returns the role slot belongs to in a process table of n slots:
// slot 0 is the master's, the last one the auxiliary process's (the cache
// manager), every other one a worker's.
func SlotRole(slot, n int) Role {
	switch slot {
	case RoleMaster.Slot(n):
		return RoleMaster
	case RoleCacheManager.Slot(n):
		return RoleCacheManager
	}
	return RoleWorker
}

// WorkerSlots returns how many slots a process table of n slots has for
// workers (and their successors during a replacement): all but the master's
// and the auxiliary one.
func WorkerSlots(n int) int { return max(0, n-2) }

// Environment variables a master sets for its children (workers and the
// auxiliary process). Their presence is what makes a process a child.
const (
	// EnvRole holds the child's Role, by name ("worker", "cache-manager").
	EnvRole = "CLUSTER2_ROLE"

	// EnvSlot holds the child's slot in the arena's process table.
	EnvSlot = "CLUSTER2_SLOT"

	// EnvMaster holds the master's pid.
	EnvMaster = "CLUSTER2_MASTER_PID"
)

// Descriptor numbers every child inherits. A child that is not handed the
// listener (the auxiliary process) has fd 3 closed: the numbers are the same
// for every role.
const (
	ListenerFD = 3 // the shared listening socket (workers only)
	ArenaFD    = 4 // the arena's memfd
	DeathFD    = 5 // read end of the master's death pipe

	// CheckFD is the write end of the pipe a process in RoleCheck writes
	// its build's information to (it inherits no listener, arena or death
	// pipe).
	CheckFD = 3
)

// Identity is what the environment said about this process when the program
// started: its role and, in a child, its slot and master's pid. The zero
// value is the master's.
type Identity struct {
	Role      Role
	Slot      int // 0 in the master
	MasterPid int // 0 in the master
}

// self is read once, when the program starts: a worker removes the
// variables (Unsetenv) before it runs anything, and the answer must not
// change then.
var self, selfErr = identity(os.LookupEnv)

// Self returns what the environment said about this process when the program
// started (later changes of the environment do not change it). A malformed
// protocol variable is an error, and the identity is then a child's (a
// worker's unless EnvRole names another role): a child must not mistake
// itself for a master and start a second cluster.
func Self() (Identity, error) { return self, selfErr }

func identity(lookup func(string) (string, bool)) (Identity, error) {
	role, hasRole := lookup(EnvRole)
	slot, hasSlot := lookup(EnvSlot)
	if !hasRole && !hasSlot {
		return Identity{Role: RoleMaster}, nil
	}
	id := Identity{Role: RoleWorker}
	switch role {
	case RoleWorker.String():
	case RoleCacheManager.String():
		id.Role = RoleCacheManager
	case RoleCheck.String():
		m, _ := lookup(EnvMaster)
		id.MasterPid, _ = strconv.Atoi(m)
		return Identity{Role: RoleCheck, MasterPid: id.MasterPid}, nil // no slot
	default:
		return id, fmt.Errorf("%s=%q is not a child's role", EnvRole, role)
	}
	n, err := strconv.Atoi(slot)
	if err != nil || n <= 0 {
		return id, fmt.Errorf("%s=%q is not a slot of a %v", EnvSlot, slot, id.Role)
	}
	id.Slot = n
	m, _ := lookup(EnvMaster)
	id.MasterPid, _ = strconv.Atoi(m)
	return id, nil
}

// ChildEnv returns env without any variable of this protocol, plus the ones
// that make a child the process of role in slot of the cluster of masterPid.
func ChildEnv(env []string, role Role, slot, masterPid int) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		if hasKey(kv, EnvRole) || hasKey(kv, EnvSlot) || hasKey(kv, EnvMaster) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, EnvRole+"="+role.String(), EnvSlot+"="+strconv.Itoa(slot), EnvMaster+"="+strconv.Itoa(masterPid))
}

// Unsetenv removes this protocol's variables from the process environment, so
// that programs a child runs are not mistaken for children of the master.
func Unsetenv() {
	os.Unsetenv(EnvRole)
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
