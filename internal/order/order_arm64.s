#include "textflag.h"

// DMB option encodings (CRm): ISH 0xb, ISHST 0xa, ISHLD 0x9.

// func LoadFence()
TEXT ·LoadFence(SB), NOSPLIT, $0-0
	DMB $0x9 // ISHLD: earlier loads before later loads and stores
	RET

// func StoreFence()
TEXT ·StoreFence(SB), NOSPLIT, $0-0
	DMB $0xa // ISHST: earlier stores before later stores
	RET

// func Fence()
TEXT ·Fence(SB), NOSPLIT, $0-0
	DMB $0xb // ISH: full barrier, inner shareable domain
	RET
