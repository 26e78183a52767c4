package bench

import (
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// children are the functions a re-executed benchmark binary can run, by
// name. Benchmark files add theirs in an init function.
var children = map[string]func(){}

func TestMain(m *testing.M) {
	xtesting.Main(m, children)
}
