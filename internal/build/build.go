package build

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// ErrLayoutMismatch is wrapped by [Layout.Compatible]'s error: two builds
// speak different versions of a shared-memory format, and must not share an
// arena.
var ErrLayoutMismatch = errors.New("shared-memory layout mismatch")

// Layout names the version of every shared-memory format a build speaks.
// The zero value is what a build that reports no layout says: compatible
// with no real one.
type Layout struct {
	Arena       uint32 `json:"arena"`       // the arena's header, process table and rings (shm.LayoutVersion, plus the test seam's bump)
	Supervision uint32 `json:"supervision"` // the control blocks (internal/proc LayoutVersion)
	Emitter     uint32 `json:"emitter"`     // the emitter's region header (emitter.RegionVersion)
	Cache       uint32 `json:"cache"`       // the cache space (cache.SpaceVersion)
}

// regions lists l's versions in the order Compatible compares them (the
// order a process attaches to them), with their names.
func (l Layout) regions() [4]struct {
	name string
	v    uint32
} {
	return [4]struct {
		name string
		v    uint32
	}{{"arena", l.Arena}, {"supervision", l.Supervision}, {"emitter", l.Emitter}, {"cache", l.Cache}}
}

// Compatible returns nil when a process of layout l may attach to an arena
// of a process of layout other (the same version of every region), and
// otherwise an error wrapping ErrLayoutMismatch that names the first region
// whose version differs and says what to do.
func (l Layout) Compatible(other Layout) error {
	mine, theirs := l.regions(), other.regions()
	for i := range mine {
		if mine[i].v != theirs[i].v {
			return fmt.Errorf("%w: the %s layout is version %d in this build and %d in the other: "+
				"a new layout never attaches to a running arena: stop and start the cluster "+
				"(persistent caches are restored from their log)", ErrLayoutMismatch, mine[i].name, mine[i].v, theirs[i].v)
		}
	}
	return nil
}

// String returns the versions on one line: "arena 4 supervision 2 emitter 1
// cache 3".
func (l Layout) String() string {
	var b []byte
	for i, r := range l.regions() {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, r.name...)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(r.v), 10)
	}
	return string(b)
}

// Info describes one build of a cluster2 program, as a process sees itself.
type Info struct {
	// Version is the application's version (cluster2.Config.Version;
	// default DefaultVersion()).
	Version string `json:"version"`

	// GoVersion is the toolchain that built the binary (runtime.Version()).
	GoVersion string `json:"go"`

	// OS and Arch are the binary's GOOS and GOARCH.
	OS   string `json:"os"`
	Arch string `json:"arch"`

	// Revision is the VCS revision the binary was built from (vcs.revision
	// of the build settings), "" when it was built without VCS stamping;
	// Modified says the work tree had changes.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`

	// Path is the executable's path (os.Executable) when the process read
	// its Info.
	Path string `json:"path"`

	// Layout is the version of every shared-memory format the build speaks.
	Layout Layout `json:"layout"`
}

// ShortRevision returns the first 12 characters of Revision.
func (i Info) ShortRevision() string { return short(i.Revision) }

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// Read returns this process's Info with version and layout as given (an
// empty version takes DefaultVersion()).
func Read(version string, layout Layout) Info {
	i := Info{Version: version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Layout: layout}
	if i.Version == "" {
		i.Version = DefaultVersion()
	}
	i.Path, _ = os.Executable()
	if bi, ok := debug.ReadBuildInfo(); ok {
		i.Revision, i.Modified = vcs(bi)
	}
	return i
}

// DefaultVersion returns the version of a build that names none: the main
// module's version when the binary was built from a module at a version
// (go install m@v1.2.3), else the short VCS revision (with "+dirty" when the
// tree was modified), else "dev".
func DefaultVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	if rev, mod := vcs(bi); rev != "" {
		if mod {
			return short(rev) + "+dirty"
		}
		return short(rev)
	}
	return "dev"
}

func vcs(bi *debug.BuildInfo) (rev string, modified bool) {
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, modified
}

// layoutBump is the test seam of the package doc: set by the linker (-X),
// empty in production builds.
var layoutBump string

// LayoutBump returns what the linker set layoutBump to (0 when it is empty
// or not a number): shm adds it to the arena's layout version. See the
// package doc.
func LayoutBump() uint32 {
	n, err := strconv.ParseUint(layoutBump, 10, 16)
	if err != nil {
		return 0
	}
	return uint32(n)
}
