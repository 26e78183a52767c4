package proc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// EnvHandover holds the Handover of a master that replaced its program image
// (execve) in an in-place upgrade, or that goes back to the previous image.
// Its presence makes Listen adopt the running cluster instead of starting
// one.
const EnvHandover = "CLUSTER2_HANDOVER"

// HandoverVersion is the version of the Handover's format. A master reads
// only its own version: one that reads another refuses the handover, and the
// way back runs.
const HandoverVersion = 1

// ErrHandover is the error of a handover that cannot be read or used.
var ErrHandover = errors.New("proc: bad handover")

// Handover is what a master's image hands to the next image of the same
// process: the descriptors it keeps open across the execve (no
// close-on-exec) and the supervision state that is not in the arena. The
// control blocks, the caches and the emitter's rings are in the arena
// already.
type Handover struct {
	Version int `json:"version"`

	// Why: "upgrade" (the next image is the new binary) or "back" (the
	// upgrade failed and the previous binary takes the cluster back).
	Why string `json:"why"`
	// Reason is why the upgrade failed, on the way back.
	Reason string `json:"reason,omitempty"`

	// Exe is the path the upgrade executed (the binary on disk, which
	// later spawns and upgrades use).
	Exe string `json:"exe"`

	// Token is the owner generation of the master's slot (0) of the arena
	// (shm.Arena.Resume).
	Token uint32 `json:"token"`

	// Descriptors: the shared listener, the arena's memfd, the death pipe's
	// ends, the monitor's and agent-check's listeners (-1: none), and the
	// previous binary (an O_PATH descriptor of the image that made this
	// handover: the way back).
	Listener   int          `json:"listener"`
	Arena      int          `json:"arena"`
	DeathR     int          `json:"deathR"`
	DeathW     int          `json:"deathW"`
	Monitor    int          `json:"monitor"`
	Agent      int          `json:"agent"`
	Previous   int          `json:"previous"`
	ProfDir    string       `json:"profDir,omitempty"`    // the workers' profiling sockets' directory
	MarkedDown bool         `json:"markedDown,omitempty"` // an operator had marked the ECV down
	Upgrade    UpgradeState `json:"upgrade"`

	// Children are the live children, workers and auxiliary processes.
	Children []Child `json:"children"`

	// Workers is the master's target worker count (master.Scale's; 0: the
	// next image's Config.Workers). An added field, omitted when 0: a
	// handover without it reads the same, so HandoverVersion stays.
	Workers int `json:"workers,omitempty"`
}

// Child is one child process of the master, as handed over.
type Child struct {
	Pid     int       `json:"pid"`
	Slot    int       `json:"slot"`
	Role    Role      `json:"role"`
	Started time.Time `json:"started"`
	Paused  bool      `json:"paused,omitempty"`
}

// UpgradeState is an in-place upgrade's record, carried across the images
// so that the last one can say what happened.
type UpgradeState struct {
	ID      int64     `json:"id"`      // unix nanoseconds of the request
	From    string    `json:"from"`    // the previous binary's build, as its check reported it
	To      string    `json:"to"`      // the new binary's
	Started time.Time `json:"started"` // when it was asked for
}

// Encode returns h as the value of EnvHandover.
func (h Handover) Encode() (string, error) {
	h.Version = HandoverVersion
	b, err := json.Marshal(h)
	return string(b), err
}

// EnvWith returns env without EnvHandover, plus EnvHandover holding h: the
// environment of the image a master execs with h.
func (h Handover) EnvWith(env []string) ([]string, error) {
	val, err := h.Encode()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !hasKey(kv, EnvHandover) {
			out = append(out, kv)
		}
	}
	return append(out, EnvHandover+"="+val), nil
}

// DecodeHandover reads a Handover from EnvHandover's value.
func DecodeHandover(s string) (Handover, error) {
	var h Handover
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return h, fmt.Errorf("%w: %w", ErrHandover, err)
	}
	if h.Version != HandoverVersion {
		return h, fmt.Errorf("%w: version %d, this build reads %d", ErrHandover, h.Version, HandoverVersion)
	}
	if h.Listener < 0 || h.Arena < 0 || h.DeathR < 0 || h.DeathW < 0 {
		return h, fmt.Errorf("%w: missing descriptor", ErrHandover)
	}
	return h, nil
}

// TakeHandover returns the handover this process was started with, and
// removes EnvHandover from the environment (children must not see it); ok is
// false when there is none.
func TakeHandover() (h Handover, ok bool, err error) {
	s, ok := os.LookupEnv(EnvHandover)
	if !ok {
		return h, false, nil
	}
	os.Unsetenv(EnvHandover)
	h, err = DecodeHandover(s)
	return h, true, err
}

// KeepOnExec clears close-on-exec on fd so that it survives the execve of a
// handover.
func KeepOnExec(fd int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
	return err
}

// CloseOnExec sets close-on-exec on fd again (an exec that failed, or a
// handed-over descriptor the new image took).
func CloseOnExec(fd int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	return err
}
