package cluster2

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// sendFdStore sends each descriptor to the service manager's store:
// FDSTOREREMOVE=1 first (a restarted master's store may hold the name
// already), then FDSTORE=1 with FDNAME= and FDPOLL=0 (a listener or a memfd
// never hangs up) and the descriptor as SCM_RIGHTS. go-systemd's daemon
// package (v22.7.0, the newest) sends no descriptors, so this is the one
// datagram written here, with x/sys's sendmsg; the address is NOTIFY_SOCKET's
// as go-systemd reads it (a path, or "@" for the abstract namespace).
func sendFdStore(fds []storedFd) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return errors.New("NOTIFY_SOCKET is unset")
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sock)
	to := &unix.SockaddrUnix{Name: path}
	for _, f := range fds {
		if err := unix.Sendmsg(sock, []byte("FDSTOREREMOVE=1\nFDNAME="+f.name), nil, to, 0); err != nil {
			return err
		}
		rc, err := f.conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			msg := strings.Join([]string{"FDSTORE=1", "FDNAME=" + f.name, "FDPOLL=0"}, "\n")
			serr = unix.Sendmsg(sock, []byte(msg), unix.UnixRights(int(fd)), to, 0)
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
	}
	return nil
}
