package persist

import (
	"errors"
	"fmt"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Open, LogWriter.Replay and LogWriter.Run.
var (
	// ErrCorrupt is returned (wrapped in a *CorruptError naming the file and
	// offset) when the log, its checkpoint or the snapshot is damaged or
	// missing, other than by a torn write past the log's durable end.
	ErrCorrupt = errors.New("persist: corrupt")

	// ErrInvalidConfig is wrapped by the errors for invalid Options (the
	// message names the field) and by Run called before Replay or Resume.
	// It is the one invalid-config error of every cluster2 package
	// (cluster2.ErrInvalidConfig is the same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig

	// ErrClosed is returned by a closed LogWriter.
	ErrClosed = errors.New("persist: closed")

	// ErrLocked is returned by Open when another process (or another
	// LogWriter of this one) holds the data directory; the message names the
	// holder's pid.
	ErrLocked = errors.New("persist: data directory in use")

	// ErrUnsafeDir is returned by Open for a data directory (or its wal
	// subdirectory) that other users could write to: group- or
	// other-writable, or not owned by this process's user.
	ErrUnsafeDir = errors.New("persist: unsafe data directory")
)

// These errors are returned by a Journal (package cache's Space.Journal) and
// its Cursor.
var (
	// ErrWriterBusy is returned by Journal.Attach when another live process
	// is the space's log writer.
	ErrWriterBusy = errors.New("persist: another live process is the space's log writer")

	// ErrJournalGap is returned by Cursor.Read when the journal overwrote
	// records the log writer had not read (it was stopped or too slow), or
	// when a writer could not journal a change of a persistent cache (see
	// package cache's ErrNotDurable): the log writer must take a snapshot
	// (Journal.Scan), calling Cursor.CoverGaps before it, to be whole again.
	ErrJournalGap = errors.New("persist: journal records were lost before the log writer read them")
)

// CorruptError tells where the damage is and how to start anyway.
// errors.Is(err, ErrCorrupt) holds; Err, if not nil, is the cause (for
// example a cache.ErrCorrupt of the replay).
type CorruptError struct {
	File   string
	Offset int64
	Reason string
	Err    error

	cut bool // salvage keeps File up to Offset and moves the rest away
}

// Error tells the file, the offset, the reason and how to start anyway.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("persist: corrupt %s at offset %d: %s; to start anyway with what comes before the damage, "+
		"start with Salvage (persist.Options.Salvage, cluster2 Config.Cache.Salvage; the demo: -salvage): "+
		"what it drops is moved to salvaged-<time>/ in the data directory, not deleted",
		e.File, e.Offset, e.Reason)
}

// Is reports ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the cause.
func (e *CorruptError) Unwrap() error { return e.Err }
