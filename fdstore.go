package cluster2

import (
	"log/slog"
	"os"
	"syscall"

	"github.com/cluster2/cluster2/shm"
)

// Names of the descriptors the master keeps in systemd's file-descriptor
// store (FDSTORE=1 with FDNAME=): on a restart of the service systemd passes
// them back through the socket-activation protocol (LISTEN_FDS with
// LISTEN_FDNAMES), and Listen takes them up: the listener (no connection is
// refused while no master runs: the kernel queues them) and the arena (the
// cache stays warm). See docs/runtime.md ("systemd: the file-descriptor
// store").
const (
	FDNameListener = "cluster2-listener"
	FDNameArena    = "cluster2-arena"
)

// storedFd is one descriptor to keep in the store.
type storedFd struct {
	name string
	conn syscall.Conn
}

// fdStoreOf returns what the master keeps in the store: nil unless the
// service manager has a store for the service (FDSTORE set in the
// environment: systemd 254 and later set it to FileDescriptorStoreMax=;
// with an older one, set it in the unit, Environment=FDSTORE=2).
func fdStoreOf(listener *os.File, a *shm.Arena) []storedFd {
	if os.Getenv("FDSTORE") == "" || os.Getenv("FDSTORE") == "0" {
		return nil
	}
	return []storedFd{{FDNameListener, listener}, {FDNameArena, a.File()}}
}

// restoreArena takes up the arena systemd's store passed back (f; nil: none)
// when it can be: an arena of this build's layout whose every process is
// dead (the previous master's and its children's slots are released: their
// locks abandoned, to be repaired by their next owners). Otherwise it
// closes f, logs why, and returns nil: the master starts with a new arena
// (a cold cache; persistent caches replayed from their log). The restored
// arena keeps its size and process table: Config.ArenaSize and a Workers
// beyond its slots apply only to a new one.
func restoreArena(f *os.File, c Config) *shm.Arena {
	if f == nil {
		return nil
	}
	log := c.Logger
	a, err := shm.Open(f)
	if err != nil {
		log.Warn("cluster2: the stored arena cannot be taken up: starting with a new one (the cache is cold)", "err", err)
		return nil
	}
	for i := range a.SlotCount() {
		if err := a.ReleaseSlot(i); err != nil {
			log.Warn("cluster2: the stored arena has a live process: starting with a new one (the cache is cold)", "err", err)
			a.Close()
			return nil
		}
	}
	log.Info("cluster2: taking up the arena systemd's file-descriptor store kept (the cache is warm)",
		"size", a.Size(), "slots", a.SlotCount())
	return a
}

// logFdStore sends the store and logs a failure (once: the master calls it
// once, at up).
func logFdStore(log *slog.Logger, fds []storedFd) {
	if err := sendFdStore(fds); err != nil {
		log.Warn("cluster2: cannot keep the listener and the arena in systemd's file-descriptor store (a restart will start cold)", "err", err)
		return
	}
	log.Info("cluster2: the listener and the arena are in systemd's file-descriptor store")
}
