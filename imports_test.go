package cluster2_test

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// layers is the import graph's one direction (docs/house.md): a production
// (non-test) file of a package may import module packages of its own layer
// or of lower layers only. Packages not listed are tools and programs (cmd/,
// bench/, fuzz/): they may import anything but the test helpers.
var layers = map[string]int{
	"shm": 0, "internal/order": 0, "internal/safefs": 0, "internal/backoff": 0, "internal/cfgerr": 0, "internal/nocopy": 0,
	"internal/xtime": 0, "internal/build": 0,
	"ring": 1, "persist": 1, "internal/proc": 1,
	"cache": 2, "emitter": 2, "status": 2,
	"master": 3, "worker": 3, "monitor": 3, "bridge": 3,
	".": 4,
}

// testHelpers may be imported by test files only (and by each other).
var testHelpers = []string{"internal/clustertest", "internal/faults", "internal/itest", "internal/soak",
	"internal/xtesting", "internal/redistest", "cache/cachetest", "emitter/emittertest", "shm/shmtest"}

const module = "github.com/cluster2/cluster2"

// TestImportGraph checks the import graph flows one way (cmd → cluster2 →
// master/worker/monitor → cache/emitter/status → persist/ring → shm) and that
// no production code imports a test helper.
func TestImportGraph(t *testing.T) {
	seen := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "web") {
			return filepath.SkipDir
		}
		p, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel := filepath.ToSlash(path)
		helper := slices.Contains(testHelpers, rel)
		layer, layered := layers[rel]
		for _, imp := range p.Imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if dep == "" {
				dep = "."
			}
			seen++
			if slices.Contains(testHelpers, dep) && !helper {
				t.Errorf("%s (production code) imports the test helper %s", rel, dep)
			}
			if dl, ok := layers[dep]; ok && layered && dl > layer {
				t.Errorf("%s (layer %d) imports %s (layer %d): the import graph must flow down", rel, layer, dep, dl)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 20 {
		t.Fatalf("only %d module imports found: the walk is broken", seen)
	}
	for rel := range layers {
		if _, err := os.Stat(rel); err != nil {
			t.Errorf("layer table names %s: %v", rel, err)
		}
	}
}
