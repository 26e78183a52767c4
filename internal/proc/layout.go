package proc

import "unsafe"

// Compile-time proofs of the Block layout: each pair fails to build when the
// size or an offset drifts from the format in the package doc.
var (
	_ [BlockSize - unsafe.Sizeof(Block{})]byte
	_ [unsafe.Sizeof(Block{}) - BlockSize]byte
	_ [unsafe.Offsetof(Block{}.state) - 128]byte
	_ [128 - unsafe.Offsetof(Block{}.state)]byte
	_ [unsafe.Offsetof(Block{}.hb) - 152]byte
	_ [152 - unsafe.Offsetof(Block{}.hb)]byte
	_ [unsafe.Offsetof(Block{}.rlen) - 280]byte
	_ [280 - unsafe.Offsetof(Block{}.rlen)]byte
	_ [unsafe.Offsetof(Block{}.reason) - 288]byte
	_ [288 - unsafe.Offsetof(Block{}.reason)]byte
	_ [unsafe.Offsetof(Block{}.blen) - 384]byte
	_ [384 - unsafe.Offsetof(Block{}.blen)]byte
	_ [unsafe.Offsetof(Block{}.build) - 392]byte
	_ [392 - unsafe.Offsetof(Block{}.build)]byte
	_ [unsafe.Offsetof(Block{}.accepts) - 512]byte
	_ [512 - unsafe.Offsetof(Block{}.accepts)]byte
	_ [unsafe.Offsetof(Block{}.requests) - 520]byte
	_ [520 - unsafe.Offsetof(Block{}.requests)]byte
	_ [unsafe.Offsetof(Block{}.hung) - 528]byte
	_ [528 - unsafe.Offsetof(Block{}.hung)]byte
	_ [unsafe.Offsetof(Block{}.reqLimit) - 24]byte
	_ [24 - unsafe.Offsetof(Block{}.reqLimit)]byte
)
