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
)
