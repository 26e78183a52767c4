package ring

import (
	"testing"

	"github.com/cluster2/cluster2/shm/shmtest"
)

func TestNoPointers(t *testing.T) {
	shmtest.AssertNoPointers(t, header{})
}

func TestDecodeRejectsOutOfRange(t *testing.T) {
	r := &Ring{cap: 256, mask: 255}
	for _, tc := range []struct {
		w  uint64
		i  uint64
		ok bool
	}{
		{8, 0, true},                    // empty record
		{8 | 7<<32, 248, true},          // last word, typed
		{16, 248, false},                // crosses the end
		{7, 0, false},                   // shorter than a header
		{padFlag | 8, 248, true},        // padding to the end
		{padFlag | 12, 0, false},        // unaligned padding
		{padFlag | 8 | 1<<32, 0, false}, // typed padding
		{padFlag, 0, false},             // empty padding
		{1<<31 - 1, 0, false},           // huge
	} {
		if _, _, ok := r.decode(tc.w, tc.i); ok != tc.ok {
			t.Errorf("decode(%#x at %d) ok = %v; want %v", tc.w, tc.i, ok, tc.ok)
		}
	}
}
