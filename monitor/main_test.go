package monitor_test

import (
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

// The monitor's tests run it against a fake source (fake_test.go); the
// monitor as cluster2.Listen wires it, with real workers, is tested in the
// root package (monitor_wire_test.go).

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"agent-emfile": childAgentEMFILE})
}
