package cluster2

import (
	"net"
	"testing"
)

// TestOnAddr: which activated socket serves Config.Addr (docs/runtime.md,
// "systemd: socket activation").
func TestOnAddr(t *testing.T) {
	v4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	any6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}
	cases := []struct {
		got  *net.TCPAddr
		addr string
		want bool
	}{
		{v4, "127.0.0.1:8080", true},
		{v4, ":8080", true},
		{v4, "0.0.0.0:8080", true},
		{v4, "127.0.0.1:0", true},
		{v4, "localhost:8080", true},
		{v4, "127.0.0.1:8081", false},
		{v4, "127.0.0.2:8080", false},
		{any6, ":8080", true},
		{any6, "[::]:8080", true},
		{any6, "127.0.0.1:8080", false},
		{v4, "no port", false},
	}
	for _, c := range cases {
		if got := onAddr(c.got, c.addr); got != c.want {
			t.Errorf("onAddr(%v, %q) = %v; want %v", c.got, c.addr, got, c.want)
		}
	}
}
