package backoff

import "time"

// Backoff computes the delays of a series of failures in a row. Set First,
// Factor and Max, then call Next after each failure and Reset after a
// success. The zero value returns 0 for ever. A Backoff is not safe for
// concurrent use; it may be copied (a copy goes on from the same point).
type Backoff struct {
	First  time.Duration // the delay after the first failure
	Factor float64       // growth per failure in a row (1.5, 2); below 1: 1
	Max    time.Duration // the cap; 0 or less: First

	last time.Duration // what Next returned last; 0 before the first failure
}

// Next returns the delay after one more failure in a row.
func (b *Backoff) Next() time.Duration {
	if b.last == 0 {
		b.last = min(b.First, b.cap())
	} else {
		b.last = min(time.Duration(float64(b.last)*max(b.Factor, 1)), b.cap())
	}
	return b.last
}

// Last returns the delay Next returned last: 0 before the first failure
// and after Reset.
func (b *Backoff) Last() time.Duration { return b.last }

// Reset starts the series again: the next failure is a first one.
func (b *Backoff) Reset() { b.last = 0 }

// Delay returns the delay after failure n (1 for the first) of a series,
// without changing b.
func (b Backoff) Delay(n int) time.Duration {
	b.Reset()
	var d time.Duration
	for range max(n, 1) {
		if d = b.Next(); d == b.cap() {
			break
		}
	}
	return d
}

func (b *Backoff) cap() time.Duration {
	if b.Max <= 0 {
		return b.First
	}
	return b.Max
}
