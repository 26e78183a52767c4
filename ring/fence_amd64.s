#include "textflag.h"

// func storeRelease(addr *atomic.Uint64, v uint64)
//
// A plain MOV: under x86-TSO a store is never reordered with earlier loads
// or stores, so it is a release store (what sync/atomic's XCHG adds is the
// store-load fence, which the ring does without: see Consumer.drained in ring.go).
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

// func cpuPause(n uint32)
TEXT ·cpuPause(SB), NOSPLIT, $0-4
	MOVL n+0(FP), AX
again:
	PAUSE
	SUBL $1, AX
	JNZ again
	RET
