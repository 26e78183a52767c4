package ring

// WritePoll is writePoll, for the external test package's
// BenchmarkWritePoll.
var WritePoll = writePoll
