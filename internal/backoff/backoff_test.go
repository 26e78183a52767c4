package backoff_test

import (
	"slices"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/backoff"
)

const ms = time.Millisecond

// TestSeries: First, then ×Factor per failure in a row, capped at Max;
// Reset starts again; Delay(n) is the n-th delay of a series.
func TestSeries(t *testing.T) {
	for _, tc := range []struct {
		b    backoff.Backoff
		want []time.Duration
	}{
		{backoff.Backoff{First: 100 * ms, Factor: 1.5, Max: time.Second},
			[]time.Duration{100 * ms, 150 * ms, 225 * ms, 337500 * time.Microsecond, 506250 * time.Microsecond,
				759375 * time.Microsecond, time.Second, time.Second}},
		{backoff.Backoff{First: 250 * ms, Factor: 2, Max: 30 * time.Second},
			[]time.Duration{250 * ms, 500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
				16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{backoff.Backoff{First: 200 * ms, Factor: 1.5, Max: 5 * time.Second},
			[]time.Duration{200 * ms, 300 * ms, 450 * ms, 675 * ms, 1012500 * time.Microsecond}},
		{backoff.Backoff{First: 10 * time.Second, Factor: 2, Max: time.Second}, []time.Duration{time.Second, time.Second}},
		{backoff.Backoff{First: 50 * ms}, []time.Duration{50 * ms, 50 * ms}},
		{backoff.Backoff{}, []time.Duration{0, 0}},
	} {
		b := tc.b
		var got []time.Duration
		for range tc.want {
			got = append(got, b.Next())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: delays %v; want %v", tc.b, got, tc.want)
		}
		if b.Last() != tc.want[len(tc.want)-1] {
			t.Errorf("%+v: Last = %v; want %v", tc.b, b.Last(), tc.want[len(tc.want)-1])
		}
		for n, w := range tc.want {
			if d := tc.b.Delay(n + 1); d != w {
				t.Errorf("%+v: Delay(%d) = %v; want %v", tc.b, n+1, d, w)
			}
		}
		b.Reset()
		if b.Last() != 0 || b.Next() != tc.want[0] {
			t.Errorf("%+v: after Reset, Last %v and Next not the first delay", tc.b, b.Last())
		}
	}
}
