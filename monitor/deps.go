package monitor

import (
	"net/http"
	"runtime/debug"
	"sync"
)

// Deps is the binary's module and its dependencies, shaped like the
// original's "npm ls --json" listing.
type Deps struct {
	Name         string         `json:"name"`    // the main module's path
	Version      string         `json:"version"` // "(devel)" for a build from a checkout
	Go           string         `json:"go"`      // the toolchain that built the binary
	Path         string         `json:"path"`    // the main package's path
	Dependencies map[string]Dep `json:"dependencies"`
}

// Dep is one module the binary was built with.
type Dep struct {
	Version  string `json:"version"`
	Sum      string `json:"sum,omitempty"`      // go.sum checksum
	Replaced *Dep   `json:"replaced,omitempty"` // the module that replaced it
	From     string `json:"from,omitempty"`     // the replacement's path
}

var (
	depsOnce sync.Once
	deps     Deps
	depsOK   bool
)

// ReadDeps returns the binary's dependencies from runtime/debug.ReadBuildInfo
// (read once: they do not change while the process runs). ok is false when
// the binary carries no build information.
func ReadDeps() (Deps, bool) {
	depsOnce.Do(func() {
		if bi, ok := debug.ReadBuildInfo(); ok {
			deps, depsOK = DepsOf(bi), true
		}
	})
	return deps, depsOK
}

// DepsOf shapes build information as /deps shows it. (A test binary's
// build information lists no dependencies.)
func DepsOf(bi *debug.BuildInfo) Deps {
	d := Deps{Name: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion, Path: bi.Path,
		Dependencies: make(map[string]Dep, len(bi.Deps))}
	for _, m := range bi.Deps {
		dep := Dep{Version: m.Version, Sum: m.Sum}
		if m.Replace != nil {
			dep.Replaced = &Dep{Version: m.Replace.Version, Sum: m.Replace.Sum}
			dep.From = m.Replace.Path
		}
		d.Dependencies[m.Path] = dep
	}
	return d
}

func serveDeps(w http.ResponseWriter, r *http.Request) {
	d, ok := ReadDeps()
	if !ok {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "monitor: the binary has no build information"})
		return
	}
	writeJSON(w, http.StatusOK, d)
}
