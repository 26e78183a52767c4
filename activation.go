package cluster2

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
)

// activatedListener returns the listening socket systemd passed the master
// (socket activation, through go-systemd's activation package) for addr,
// or nil when none was passed. It unsets LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES, so that no child sees them. Among several passed sockets
// the first (in LISTEN_FDS order) on addr is used and the others are closed
// (each logged); sockets passed but none on addr is ErrActivation. A socket
// is on addr when its port is addr's (any port when addr's is 0 or empty)
// and its IP is addr's host (any IP when the host is empty or unspecified,
// "0.0.0.0" or "::"; a name is resolved).
//
// A descriptor named FDNameArena (LISTEN_FDNAMES) is not a listener: it is
// the arena memfd the master stored in systemd's file-descriptor store
// (FDSTORE=1, see notify.go), returned as arena for Listen to take up again
// (nil when none was passed).
func activatedListener(addr string, log *slog.Logger) (ln *net.TCPListener, arena *os.File, err error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil, nil
	}
	var found *net.TCPListener
	var seen []string
	for _, f := range files {
		if f.Name() == FDNameArena {
			if arena != nil {
				arena.Close()
			}
			arena = f
			continue
		}
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds a dup
		if err != nil {
			log.Warn("cluster2: activated descriptor is not a listener: closed", "name", f.Name(), "err", err)
			continue
		}
		tl, ok := ln.(*net.TCPListener)
		switch {
		case ok && found == nil && onAddr(tl.Addr().(*net.TCPAddr), addr):
			found = tl
			continue
		case ok && found != nil && onAddr(tl.Addr().(*net.TCPAddr), addr):
			log.Warn("cluster2: another activated socket on Config.Addr: closed (the first one serves)",
				"addr", ln.Addr().String(), "serving", found.Addr().String())
		default:
			log.Warn("cluster2: activated socket not on Config.Addr: closed", "addr", ln.Addr().String(), "want", addr)
		}
		seen = append(seen, ln.Addr().String())
		ln.Close()
	}
	if found == nil && len(files) > 0 && (arena == nil || len(files) > 1) {
		if arena != nil {
			arena.Close()
		}
		return nil, nil, fmt.Errorf("%w: %s (passed: %v)", ErrActivation, addr, seen)
	}
	return found, arena, nil
}

// onAddr reports whether got is on addr (see activatedListener).
func onAddr(got *net.TCPAddr, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if port != "" && port != "0" {
		p, err := net.LookupPort("tcp", port)
		if err != nil || p != got.Port {
			return false
		}
	}
	if host == "" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsUnspecified() || ip.Equal(got.IP)
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip.Equal(got.IP) {
			return true
		}
	}
	return false
}
