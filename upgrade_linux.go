package cluster2

import "golang.org/x/sys/unix"

// openRunningBinary opens the binary this process runs as an O_PATH
// descriptor without close-on-exec: the next image of an in-place upgrade
// can exec it again (/proc/self/fd/N), whatever was renamed over its path.
func openRunningBinary() (int, error) { return unix.Open("/proc/self/exe", unix.O_PATH, 0) }
