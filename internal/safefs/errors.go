package safefs

import "errors"

// Errors of package safefs; callers wrap them in their own sentinels.
var (
	// ErrUnsafeDir is wrapped by CheckDir and PrepareDir for a directory
	// other users could change: a symlink, not a directory, not owned by
	// this process's effective user, or writable by its group or others.
	ErrUnsafeDir = errors.New("safefs: unsafe directory")

	// ErrUnsafeFile is wrapped by OpenNoFollow for a symlink (not followed)
	// and by CheckOwnedFile for a file that is not a regular file of this
	// user.
	ErrUnsafeFile = errors.New("safefs: unsafe file")
)
