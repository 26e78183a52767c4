package emitter_test

import (
	"testing"

	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, children)
}
