// Package build says what a cluster2 binary is: its [Info] (the
// application's version, the Go toolchain, the VCS revision, the
// executable's path) and its [Layout], the version of every shared-memory
// format the build speaks.
//
// It is a leaf (layer 0 of the import graph, docs/house.md): it imports no
// package of the module. The root package assembles this build's Layout from
// the packages that own each format (shm, internal/proc, emitter, cache);
// shm reads [LayoutBump] so that a test binary can speak another layout.
//
// # The layout rule
//
// A process attaches to an arena only when it speaks the arena's layout:
// shm.Open refuses an arena of another version (shm.ErrLayoutVersion), and
// each region checks its own header or name. [Layout.Compatible] compares two
// builds before either touches the other's arena: it names the first region
// whose version differs (an error wrapping [ErrLayoutMismatch]). A new layout
// never attaches to a running arena: stop and start the cluster; persistent
// caches are restored from their log (docs/runtime.md).
//
// # Test seam: the layout bump
//
// layoutBump is set with the linker:
//
//	go build -ldflags "-X github.com/cluster2/cluster2/internal/build.layoutBump=1"
//
// A binary built so adds the bump to the arena's layout version: it creates
// arenas of that version and shm.Open refuses any other, so such a binary
// and one built without it can never share an arena, in either direction
// (every region lives in the arena and is reached only through shm.Open or
// shm.Create). The bumped binary's Layout says so, so that the check before a
// restart or an upgrade refuses it. Production builds leave it empty.
package build
