package persist

import (
	"errors"
	"fmt"
)

// These errors can be returned by Open, Manager.Replay and Manager.Run.
var (
	// ErrCorrupt is returned (wrapped in a *CorruptError naming the file and
	// offset) when the log or the snapshot is damaged other than by a torn
	// last write.
	ErrCorrupt = errors.New("persist: corrupt")

	// ErrBadOptions is returned for invalid Options.
	ErrBadOptions = errors.New("persist: invalid options")

	// ErrClosed is returned by a closed Manager.
	ErrClosed = errors.New("persist: closed")
)

// CorruptError tells where the damage is. errors.Is(err, ErrCorrupt) holds.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
}

// Error tells the file, the offset, the reason and how to start anyway.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("persist: corrupt %s at offset %d: %s (start with Options.Salvage to keep what comes before it)",
		e.File, e.Offset, e.Reason)
}

// Is reports ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
