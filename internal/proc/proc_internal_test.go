package proc

import (
	"strings"
	"testing"
)

// TestIdentity: the protocol's variables make a child of the role they
// name; none makes the master; a malformed one is an error, never the
// master's identity.
func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want Identity
		err  string
	}{
		{env: nil, want: Identity{Role: RoleMaster}},
		{env: map[string]string{EnvRole: "worker", EnvSlot: "3", EnvMaster: "42"}, want: Identity{RoleWorker, 3, 42}},
		{env: map[string]string{EnvRole: "cache-manager", EnvSlot: "15", EnvMaster: "42"}, want: Identity{RoleCacheManager, 15, 42}},
		{env: map[string]string{EnvRole: "check", EnvSlot: "0", EnvMaster: "42"}, want: Identity{Role: RoleCheck, MasterPid: 42}},
		{env: map[string]string{EnvRole: "worker", EnvSlot: "x"}, want: Identity{Role: RoleWorker}, err: "is not a slot"},
		{env: map[string]string{EnvRole: "worker", EnvSlot: "0"}, want: Identity{Role: RoleWorker}, err: "is not a slot"},
		{env: map[string]string{EnvSlot: "3"}, want: Identity{Role: RoleWorker}, err: "is not a child's role"},
		{env: map[string]string{EnvRole: "master", EnvSlot: "3"}, want: Identity{Role: RoleWorker}, err: "is not a child's role"},
	} {
		id, err := identity(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if id != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("identity(%v) = %+v, %v; want %+v, an error with %q", tc.env, id, err, tc.want, tc.err)
		}
	}
}

// TestSlotRoles: slot 0 is the master's, the last slot the auxiliary
// process's, every other one a worker's.
func TestSlotRoles(t *testing.T) {
	const n = 16
	for slot := range n {
		want := RoleWorker
		switch slot {
		case 0:
			want = RoleMaster
		case n - 1:
			want = RoleCacheManager
		}
		if got := SlotRole(slot, n); got != want {
			t.Errorf("SlotRole(%d, %d) = %v; want %v", slot, n, got, want)
		}
		if r := SlotRole(slot, n); r != RoleWorker && r.Slot(n) != slot {
			t.Errorf("%v.Slot(%d) = %d; want %d", r, n, r.Slot(n), slot)
		}
	}
	if WorkerSlots(n) != n-2 || RoleWorker.Slot(n) != -1 {
		t.Errorf("WorkerSlots(%d) = %d, RoleWorker.Slot = %d; want %d, -1", n, WorkerSlots(n), RoleWorker.Slot(n), n-2)
	}
}
