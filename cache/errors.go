package cache

import (
	"errors"
	"fmt"

	"github.com/cluster2/cluster2/internal/cfgerr"
)

// These errors can be returned by Get, GetInto, Set, Del, Inspect, Keys and
// the atomic and tag operations (Add, Counter, CompareAndSwap, SetIfAbsent,
// InvalidateTag, Clear).
var (
	// ErrNotFound is returned by Get with a nil loader, and by Inspect, when
	// the key has no value. An empty value is a value: it is not ErrNotFound.
	ErrNotFound = errors.New("cache: not found")

	// ErrEmptyKey is returned for the empty key.
	ErrEmptyKey = errors.New("cache: empty key")

	// ErrKeyTooLarge is returned for keys longer than MaxKeyLen bytes.
	ErrKeyTooLarge = errors.New("cache: key too large")

	// ErrValueTooLarge is returned for values longer than the space's
	// MaxValueLen; nothing is stored or evicted.
	ErrValueTooLarge = errors.New("cache: value too large")

	// ErrClosed is returned by every method of a closed Cache.
	ErrClosed = errors.New("cache: closed")

	// ErrLoaderFailed wraps the error of a loader that ran in another process
	// (or another goroutine) while this caller waited for its value; the text
	// of the loader's error follows it.
	ErrLoaderFailed = errors.New("cache: loader failed")

	// ErrTooManyLoads is returned by Set and Get when a shard is so full of
	// loads in progress (Get's loading records, which are never evicted) that
	// the record finds no room, or every slot of the key's probe range holds
	// one. Nothing is stored; no loader runs a second time. A loader whose
	// value finds no room returns the value to its own caller; the waiters
	// get ErrLoaderFailed wrapping ErrTooManyLoads. Retry later, or give the
	// space more bytes.
	ErrTooManyLoads = errors.New("cache: too many loads in progress")

	// ErrLoadTimeout is returned by Get when the load it ran or waited for
	// took longer than the cache's HardTimeout and no old value is kept
	// to return instead (FailSafeFor). The load goes on if its loader does
	// not return, and stores its result.
	ErrLoadTimeout = errors.New("cache: load timed out")

	// ErrLoaderPanic is wrapped by the error Get returns when its loader
	// panicked: a *LoaderPanicError, with the panic's value and stack. The
	// panic does not go further (it would take down a process serving
	// everyone else's requests); the load ends as failed, so waiters in
	// other processes get ErrLoaderFailed with the panic's text, and the
	// fail-safe serves an old value as for any failure.
	ErrLoaderPanic = errors.New("cache: loader panicked")

	// ErrNotCounter is returned by Add and Counter when the key holds a
	// value that is not a counter (one stored by Set, whatever its length);
	// nothing is changed.
	ErrNotCounter = errors.New("cache: not a counter")

	// ErrOverflow is returned by Add when the sum leaves the int64 range;
	// the counter keeps its value.
	ErrOverflow = errors.New("cache: counter overflow")

	// ErrBadTag is returned for a tag that is empty or longer than
	// MaxTagLen bytes; nothing is stored or removed.
	ErrBadTag = errors.New("cache: bad tag")

	// ErrTooManyTags is returned by Set (and Add, CompareAndSwap) for more
	// than MaxTags tags; nothing is stored.
	ErrTooManyTags = errors.New("cache: too many tags")
)

// These errors can be returned by Use, Setup and Attach.
var (
	// ErrOptionsConflict is returned by Use when the cache exists with other
	// options; the message names the option and both values.
	ErrOptionsConflict = errors.New("cache: options conflict with the cache's")

	// ErrBadName is returned for an empty name or one longer than MaxNameLen.
	ErrBadName = errors.New("cache: bad cache name")

	// ErrTooManyCaches is returned when the space already holds MaxCaches caches.
	ErrTooManyCaches = errors.New("cache: too many caches")

	// ErrNoSpace is returned by Attach when the arena holds no cache space,
	// and by Use when the process has no default space (it is not part of a
	// running cluster with the cache enabled).
	ErrNoSpace = errors.New("cache: no cache space")

	// ErrCorrupt is returned by Attach when the space's header is damaged, and
	// by Verify (wrapped, with every inconsistency found).
	ErrCorrupt = errors.New("cache: corrupt")

	// ErrInvalidConfig is wrapped by the errors for invalid Options or
	// SpaceOptions; the message names the field. It is the one
	// invalid-config error of every cluster2 package
	// (cluster2.ErrInvalidConfig is the same value).
	ErrInvalidConfig = cfgerr.ErrInvalidConfig
)

// ErrRemoteDown is wrapped by the errors of a distributed cache's second
// tier when it cannot be reached (package bridge's ErrRedisDown is the same
// value): a Set, Del, InvalidateTag or Clear then changed nothing (unless
// the bridge allows local writes), and a load served the kept value or ran
// the loader without the tier. See Remote.
var ErrRemoteDown = errors.New("cache: the second tier (redis) is down")

// These errors concern persistent caches.
var (
	// ErrNotDurable is returned (wrapped) by Set and Del of a persistent
	// cache when the change is in the cache (other processes may see it)
	// but is not known to be in the log: for any durability when the
	// change could not be journaled (the journal lock was held 5 s by a
	// process that does not run; the log writer's next snapshot logs it);
	// for Always when no live log writer logs the cache, when the
	// log writer began failing to write its log (then it also wraps
	// ErrPersistFailing), or when ctx ended before the change was on disk.
	// A caller may not assume the change survives a restart; it may set it
	// again (changes are idempotent) or undo it.
	ErrNotDurable = errors.New("cache: change not known to be durable")

	// ErrPersistFailing is returned (wrapped) by Set and Del of a
	// persistent cache, whatever its durability, while the log writer
	// cannot write its log (a full disk, an I/O error; the message names
	// the error). Nothing was changed, unless the error also wraps
	// ErrNotDurable (an Always writer already waiting when the failure
	// began: see there). The log writer retries by itself and
	// Sets succeed again once it has written its log; /status and /metrics
	// show the condition.
	ErrPersistFailing = errors.New("cache: the log writer cannot write its log; persistent changes are refused")
)

// LoaderPanicError is the error of a loader that panicked (see
// ErrLoaderPanic).
type LoaderPanicError struct {
	Value any    // what the loader panicked with
	Stack []byte // the loader's goroutine's stack at the panic (runtime/debug.Stack)
}

// Error returns the panic's value; the stack is in Stack.
func (e *LoaderPanicError) Error() string { return fmt.Sprintf("loader panicked: %v", e.Value) }

// Unwrap returns ErrLoaderPanic and, when the loader panicked with an
// error, that error.
func (e *LoaderPanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrLoaderPanic, err}
	}
	return []error{ErrLoaderPanic}
}
