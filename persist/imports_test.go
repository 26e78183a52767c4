package persist_test

import (
	"go/build"
	"strings"
	"testing"
)

// persist sits below cache in the import graph (cmd → cluster2 →
// master/worker/monitor → cache/emitter/status → persist/ring → shm): it
// defines the Journal it consumes and imports no cache type, and no test
// helper of the module (internal/faults, a test hook production code once
// imported, is gone: the hook is persist's own, hooks.go).
func TestImportsNothingAbove(t *testing.T) {
	p, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range p.Imports {
		rest, ours := strings.CutPrefix(imp, "github.com/cluster2/cluster2")
		if !ours {
			continue
		}
		switch {
		case rest == "", rest == "/cache", strings.HasPrefix(rest, "/cache/"):
			t.Errorf("persist imports %s; it must not import cache or anything above it", imp)
		case strings.HasPrefix(rest, "/internal/") && (strings.Contains(rest, "test") || rest == "/internal/faults"):
			t.Errorf("persist imports the test helper %s", imp)
		case !strings.HasPrefix(rest, "/internal/") && rest != "/shm":
			t.Errorf("persist imports %s; only shm and internal packages lie below it", imp)
		}
	}
}
