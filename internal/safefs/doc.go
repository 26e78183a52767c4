// Package safefs owns one rule of cluster2: which directories are safe to
// keep our files in, and how files are opened and replaced in them. Package
// persist (data directories), package master (Config.PidDir) and the demo
// (its run directory) use it; each wraps its errors in its own sentinel
// error, so that errors.Is holds for both that sentinel and this package's.
//
// # Threat
//
// Another local user who can write in a directory we keep files in can
// plant a symlink (or a file) under the name of the next file we open, and
// a process that follows it (often running as root) reads, truncates or
// overwrites whatever it points at; or that user can swap the directory
// itself for a link to one of theirs. So:
//
//   - [CheckDir] accepts only a directory owned by this process's effective
//     user that neither its group nor others may write in (an existing 0755
//     directory is accepted), and, unless [FollowLink], one that is not
//     itself a symlink. Only the directory itself is checked, not its
//     parents. [PrepareDir] first creates it (mode 0700; its missing parents
//     too with [Parents]).
//   - [OpenNoFollow] opens with O_NOFOLLOW: a symlink as the last element
//     of the path fails (ELOOP, wrapped in [ErrUnsafeFile]) instead of being
//     followed. [CheckOwnedFile] checks that an open file is a regular file
//     of this user.
//   - [WriteFileAtomic] writes a new file (O_CREAT|O_EXCL|O_NOFOLLOW) and
//     renames it over the name: a symlink planted as the file is replaced,
//     never followed, and a reader sees the whole old file or the whole new
//     one.
//
// Not its concern: a process that holds a pid another one had (pid reuse;
// see shm.ProcessAlive), a user with our uid or root, and durability (the
// callers that need a write to outlast a crash fsync themselves).
package safefs
