// Package cfgerr defines the one error every cluster2 package wraps for an
// invalid configuration: a Config, an Options or a size out of range.
//
// Each public package re-exports it under the same name,
//
//	var ErrInvalidConfig = cfgerr.ErrInvalidConfig
//
// so that errors.Is(err, cluster2.ErrInvalidConfig) holds for a bad
// cache.Options, ring capacity or monitor option as much as for a bad
// cluster2.Config, and a caller tests one value whichever layer refused.
// The wrapping message names the package and the field:
//
//	fmt.Errorf("ring: %w: capacity %d is not a power of two", ErrInvalidConfig, n)
//
// reads "ring: invalid configuration: capacity 3 is not a power of two".
package cfgerr

import "errors"

// ErrInvalidConfig is the sentinel of an invalid configuration. Its message
// has no package prefix: the wrapping error gives it, with the field.
var ErrInvalidConfig = errors.New("invalid configuration")
