package ring_test

import (
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){
		"stream":      childStream,
		"slowwriter":  childSlowWriter,
		"consumeexit": childConsumeExit,
	})
}
