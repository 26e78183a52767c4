package cluster2

import (
	"github.com/cluster2/cluster2/cache"
	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/internal/build"
	"github.com/cluster2/cluster2/internal/proc"
	"github.com/cluster2/cluster2/shm"
)

// BuildInfo describes one build of a cluster2 program: the application's
// Version (Config.Version), the Go version, GOOS/GOARCH, the VCS revision,
// the executable's path and the Layout it speaks. A check (Check) reads it
// from a new binary; Cluster.Build returns this process's.
type BuildInfo = build.Info

// Layout names the version of every shared-memory format a build speaks:
// the arena (shm), the supervision region (internal/proc), the emitter's
// region and the cache space. Two builds share an arena only when
// Layout.Compatible says so; see docs/runtime.md ("The layout rule").
type Layout = build.Layout

// ErrLayoutMismatch is wrapped by Layout.Compatible's error (and by Check's,
// with ErrCheckFailed) when two builds speak different versions of a
// shared-memory format: the message names the first region that differs.
// A new layout never attaches to a running arena: stop and start the
// cluster; persistent caches are restored from their log.
var ErrLayoutMismatch = build.ErrLayoutMismatch

// ThisLayout returns the layout this build speaks.
func ThisLayout() Layout {
	return Layout{Arena: shm.Version(), Supervision: proc.LayoutVersion, Emitter: emitter.RegionVersion, Cache: cache.SpaceVersion}
}

// buildInfo returns this process's BuildInfo under c (Version filled in by
// the defaults).
func buildInfo(c Config) BuildInfo { return build.Read(c.Version, ThisLayout()) }

// Build returns this process's build: Config.Version, the toolchain, the
// revision, the executable and the layout.
func (c *Cluster) Build() BuildInfo { return buildInfo(c.cfg) }
