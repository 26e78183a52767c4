// Package backoff is the one back-off of the tree: the delays between the
// attempts of something that keeps failing (a crashing child, a spawn that
// fails, a successor that does not warm up, a data directory that cannot be
// opened). Each user keeps its own figures (First, Factor, Max); the rule is
// the same everywhere:
//
//	delay after failure 1 in a row:  First
//	delay after failure n+1:         min(delay n × Factor, Max)
//	after Reset:                     failure 1 again
package backoff
