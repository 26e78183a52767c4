package shm

import (
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestNoPointers(t *testing.T) {
	xtesting.AssertNoPointers(t, header{}, slot{}, regionEntry{}, lockRange{}, Lock{}, Event{})
}

func TestSlotWord(t *testing.T) {
	w := slotWord(4194304, slotLive)
	if wordPid(w) != 4194304 || wordState(w) != slotLive {
		t.Fatalf("slotWord round trip: pid %d state %d", wordPid(w), wordState(w))
	}
}

func TestTokensSkipReserved(t *testing.T) {
	a := &Arena{h: &header{}}
	a.h.gen.Store(tokensPerWrap - 1)
	for range 3 {
		if tok := a.newToken(); tok < firstToken || tok > tokenMask {
			t.Fatalf("newToken = %d; want within [%d, %d]", tok, firstToken, tokenMask)
		}
	}
}
