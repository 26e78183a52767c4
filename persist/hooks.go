package persist

import _ "unsafe" // for go:linkname: the test hook below is set from another package's tests

// beforeSync, if set, is called by the log writer after it wrote log entries
// and before the fdatasync that makes them durable. It is a test hook, nil in
// every real program: only cluster2's own chaos tests set it (internal/soak's
// cache manager kill -9s itself there; it reaches the variable with a
// go:linkname of its own, since the hook lives in another test binary than
// persist's). No production code imports a test package for it.
//
//go:linkname beforeSync
var beforeSync func()
