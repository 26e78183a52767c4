package cluster2_test

import (
	"errors"
	"testing"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm"
)

// TestThisLayout: this build's layout names each region's version, and is
// compatible with itself only; Config.Version has a default.
func TestThisLayout(t *testing.T) {
	l := cluster2.ThisLayout()
	if l.Arena != shm.LayoutVersion || l.Supervision != proc.LayoutVersion || l.Emitter == 0 || l.Cache == 0 {
		t.Fatalf("ThisLayout = %+v", l)
	}
	if err := l.Compatible(l); err != nil {
		t.Fatal(err)
	}
	other := l
	other.Cache++
	if err := l.Compatible(other); !errors.Is(err, cluster2.ErrLayoutMismatch) {
		t.Fatalf("Compatible(cache+1) = %v; want ErrLayoutMismatch", err)
	}
	if v := cluster2.DefaultConfig().Version; v == "" || v != build.DefaultVersion() {
		t.Fatalf("DefaultConfig().Version = %q; want %q", v, build.DefaultVersion())
	}
}
