package emitter

import (
	"testing"

	"github.com/cluster2/cluster2/shm/shmtest"
)

// TestNoPointers proves that the region's structs hold no Go pointers.
func TestNoPointers(t *testing.T) {
	shmtest.AssertNoPointers(t, regionHeader{}, slotEntry{})
}
