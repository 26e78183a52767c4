package xtime

import (
	"context"
	"time"
)

// Sleep waits d, or until done is closed, whichever comes first, and reports
// whether d passed (false: done was closed first). A nil done never closes.
func Sleep(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// SleepCtx waits d, or until ctx ends, whichever comes first: it returns nil
// when d passed and ctx's error when ctx ended first.
func SleepCtx(ctx context.Context, d time.Duration) error {
	if Sleep(ctx.Done(), d) {
		return nil
	}
	return ctx.Err()
}

// Bound returns d, or the time left before ctx's deadline when that is
// shorter (never less than zero): the bound of one wait that must not
// outlast ctx.
func Bound(ctx context.Context, d time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, max(time.Until(dl), 0))
	}
	return d
}
