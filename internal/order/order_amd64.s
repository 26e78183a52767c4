#include "textflag.h"

// func StoreRelease(p *atomic.Uint64, v uint64)
// A plain MOV: under x86-TSO a store is never reordered with earlier loads or
// stores (what sync/atomic's XCHG adds is the store-load fence).
TEXT ·StoreRelease(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

// func Fence()
// A locked read-modify-write that changes nothing (the word at SP is our
// return address): a full fence.
TEXT ·Fence(SB), NOSPLIT, $0-0
	LOCK
	ORQ $0, (SP)
	RET
