package ring_test

import "testing"

// FuzzRecords reads its input as a sequence of operations on a 128-byte ring
// (small, so that it wraps and fills often) and checks the ring against the
// model of reference_test.go: every TryWrite outcome, and every record Poll
// delivers, in order and whole.
//
// Each operation takes two bytes: op, arg. op even: TryWrite of a record of
// type op with an arg-byte payload (arg > 120 is too large); op odd: Poll of
// at most arg%8 records.
func FuzzRecords(f *testing.F) {
	f.Add([]byte{})                                       // nothing
	f.Add([]byte{0, 0, 1, 1})                             // one empty record, read back
	f.Add([]byte{2, 40, 2, 40, 2, 40, 1, 7, 2, 40, 1, 7}) // fill, drain, wrap with padding
	f.Add([]byte{4, 120, 1, 1, 4, 121})                   // the largest record, then one too large
	f.Add([]byte{6, 10, 6, 10, 6, 10, 6, 10, 6, 10, 6, 10, 6, 10, 6, 10, 1, 3, 6, 50, 1, 0, 1, 7})
	f.Fuzz(func(t *testing.T, ops []byte) {
		runModel(t, 128, func() (bool, uint32, int, bool) {
			if len(ops) < 2 {
				return false, 0, 0, false
			}
			op, arg := ops[0], ops[1]
			ops = ops[2:]
			if op%2 == 0 {
				return true, uint32(op), int(arg), true
			}
			return false, 0, int(arg % 8), true
		})
	})
}
