// Package backoff is the one back-off of the tree: the delays between the
// attempts of something that keeps failing: a crashing child, a spawn that
// fails, a successor that does not warm up, the death queue after a failed
// replacement (master); a data directory the cache manager cannot open
// (cluster2); a log that cannot be written (persist); the agent check's
// accept out of descriptors (monitor). Each user keeps its own figures
// (First, Factor, Max); the rule is the same everywhere:
//
//	delay after failure 1 in a row:  First
//	delay after failure n+1:         min(delay n × Factor, Max)
//	after Reset:                     failure 1 again
package backoff
