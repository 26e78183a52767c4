package monitor_test

import (
	"bytes"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
)

// The headers a browser sends with a request of a page of another site: an
// <img src> (GET), a <form method=post>, a fetch. The tests below send
// exactly these from a real HTTP client to a real socket.
var (
	imgFromEvil  = []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"}
	formFromEvil = []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Origin", "http://evil.example"}
	// An older browser: no Sec-Fetch-*, but a foreign Origin.
	originOnly = []string{"Origin", "http://evil.example"}
	nullOrigin = []string{"Origin", "null"} // a sandboxed iframe, a data: page
)

func hdr(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Item 8: a cross-site GET never takes the node out of rotation (GET of
// markDown is 405; with MarkWithGET, a cross-site one is 403), and
// cross-site requests of profiles, the key feed and the dashboard's data
// are refused, while the same requests from the dashboard's own page pass.
func TestCrossSiteRequestsRefused(t *testing.T) {
	f := newFake(101)
	s, u := serve(t, f, monitor.Options{Addr: "127.0.0.1:0", ProfileDir: t.TempDir()})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", u+"/ecv/markDown", 403, "cross-site", imgFromEvil...)
	want(t, "GET", u+"/ecv/markDown", 405, "POST") // curl too: GET never changes state
	want(t, "GET", u+"/ecv", 200, monitor.BodyUp)
	for _, h := range [][]string{imgFromEvil, formFromEvil, originOnly, nullOrigin} {
		for _, r := range []struct{ method, path string }{
			{"POST", "/ecv/markDown"}, {"POST", "/debug/api/ecv/markDown"}, {"POST", "/debug/api/workers/101/pause"},
			{"POST", "/debug/api/rolling-restart"}, {"GET", "/debug/workers/101/pprof/heap"},
			{"GET", "/debug/workers/101/pprof/profile?seconds=1"}, {"GET", "/debug/api/caches/c/changes"},
			{"GET", "/status"}, {"GET", "/debug/api/overview"}, {"GET", "/debug/events"}, {"GET", "/metrics"},
		} {
			want(t, r.method, u+r.path, 403, "cross-site", h...)
		}
	}
	want(t, "GET", u+"/ecv", 200, monitor.BodyUp)
	if got := f.done(); len(got) != 0 {
		t.Fatalf("cross-site requests ran actions %v", got)
	}
	// The load balancer's routes stay open to anyone.
	want(t, "GET", u+"/ecv", 200, monitor.BodyUp, imgFromEvil...)
	want(t, "GET", u+"/livez", 200, "ok", imgFromEvil...)
	// The dashboard's own page: same-origin fetches pass.
	host := strings.TrimPrefix(u, "http://")
	same := []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + host}
	want(t, "POST", u+"/debug/api/workers/101/pause", 200, `"ok": true`, same...)
	want(t, "GET", u+"/debug/api/overview", 200, `"workers"`, same...)
	want(t, "GET", u+"/debug", 200, "<", "Sec-Fetch-Site", "none") // typed in

	// MarkWithGET: the original's GET works for a same-origin or non-browser
	// client, never for a cross-site page.
	s2, u2 := serve(t, newFake(101), monitor.Options{Addr: "127.0.0.1:0", ECV: monitor.ECVOptions{MarkWithGET: true}})
	s2.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", u2+"/ecv/markDown", 403, "cross-site", imgFromEvil...)
	want(t, "GET", u2+"/ecv/markDown", 403, "cross-site", originOnly...)
	want(t, "GET", u2+"/ecv", 200, monitor.BodyUp)
	want(t, "GET", u2+"/ecv/markDown", 200, monitor.BodyDisabled)
	want(t, "GET", u2+"/ecv/markUp", 200, monitor.BodyUp)
	want(t, "PUT", u2+"/ecv/markUp", 405, "GET, POST")
}

// Item 9: DNS rebinding. A page of evil.example whose name now resolves to
// 127.0.0.1 reaches a loopback monitor with "Host: evil.example:PORT" and
// no cross-site header at all (to the browser it is same-origin): refused,
// on every route. Loopback names and addresses and the operator's
// AllowedHosts are answered.
func TestHostHeaderChecked(t *testing.T) {
	f := newFake(101)
	s, u := serve(t, f, monitor.Options{Addr: "127.0.0.1:0", AllowedHosts: []string{"mon.internal"}})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	port := u[strings.LastIndexByte(u, ':')+1:]
	evil := "evil.example:" + port
	rebound := []string{"Host", evil, "Sec-Fetch-Site", "same-origin", "Origin", "http://" + evil}
	for _, r := range []struct{ method, path string }{
		{"POST", "/ecv/markDown"}, {"POST", "/debug/api/ecv/markDown"}, {"POST", "/debug/api/workers/101/replace"},
		{"GET", "/debug/api/caches/c/changes"}, {"GET", "/status"}, {"GET", "/debug/api/overview"},
		{"GET", "/metrics"}, {"GET", "/debug"}, {"GET", "/deps"},
	} {
		want(t, r.method, u+r.path, 403, "Host", rebound...)
		want(t, r.method, u+r.path, 403, "Host", "Host", "evil.example") // no port, no browser headers
	}
	want(t, "GET", u+"/ecv", 200, monitor.BodyUp)
	if got := f.done(); len(got) != 0 {
		t.Fatalf("rebound requests ran actions %v", got)
	}
	// The ECV and /livez answer a load balancer's check whatever its Host.
	want(t, "GET", u+"/ecv", 200, monitor.BodyUp, "Host", "www.example")
	want(t, "GET", u+"/livez", 200, "ok", "Host", "www.example")
	for _, h := range []string{"localhost:" + port, "LOCALHOST", "127.0.0.1:" + port, "127.9.9.9:" + port, "[::1]:" + port,
		"mon.internal:" + port, "mon.internal.", "localhost."} {
		want(t, "GET", u+"/debug/api/ecv", 200, `"up": true`, "Host", h)
	}
	for _, h := range []string{"10.0.0.1:" + port, "localhost.evil.example", "mon.internal.evil.example", "[::2]:" + port} {
		want(t, "GET", u+"/debug/api/ecv", 403, "Host", "Host", h)
	}
	// Beyond loopback: any Host while AllowedHosts is empty (the token
	// guards); with AllowedHosts, addresses and those names only.
	_, u2 := serve(t, f, monitor.Options{Addr: "0.0.0.0:0", Token: "t"})
	want(t, "GET", u2+"/debug/api/ecv", 200, "", "Host", "node7.example:8081")
	_, u3 := serve(t, f, monitor.Options{Addr: "0.0.0.0:0", Token: "t", AllowedHosts: []string{"node7.example"}})
	want(t, "GET", u3+"/debug/api/ecv", 200, "", "Host", "node7.example:8081")
	want(t, "GET", u3+"/debug/api/ecv", 200, "", "Host", "10.1.2.3:8081")
	want(t, "GET", u3+"/debug/api/ecv", 403, "Host", "Host", "evil.example:8081")
}

// Item 10: with a token, another local user (a client on loopback with no
// token, or a wrong or malformed one) is refused every action, profile and
// data feed; the ECV, /livez and the figures stay open.
func TestTokenRequiredOnLoopback(t *testing.T) {
	const token = "s3cret"
	f := newFake(101)
	f.caches = []monitor.CacheInfo{{Name: "c"}}
	s, u := serve(t, f, monitor.Options{Addr: "127.0.0.1:0", Token: token, ProfileDir: t.TempDir()})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	guarded := []struct{ method, path string }{
		{"POST", "/ecv/markDown"}, {"POST", "/ecv/markUp"}, {"POST", "/debug/api/ecv/markDown"},
		{"POST", "/debug/api/ecv/markUp"}, {"POST", "/debug/api/workers/101/pause"},
		{"POST", "/debug/api/workers/101/resume"}, {"POST", "/debug/api/workers/101/replace"},
		{"POST", "/debug/api/rolling-restart"}, {"GET", "/debug/workers/101/pprof/heap"},
		{"GET", "/debug/workers/101/pprof/profile?seconds=1"}, {"GET", "/debug/api/caches/c/changes"},
		{"GET", "/status"},
	}
	bad := [][]string{
		nil, // another local user: no token
		{"Authorization", "Bearer wrong"},
		{"Authorization", token}, // no "Bearer " prefix
		{"Authorization", "Basic " + token},
		{"Authorization", "Bearer"},
		{"Authorization", "Bearer "},
		{"Authorization", "bearer " + token},  // the prefix is "Bearer "
		{"Authorization", "Bearer  " + token}, // two spaces: not the token
		{"Authorization", "Bearer " + token, "Authorization", "Bearer " + token}, // two headers
	}
	for _, g := range guarded {
		for _, h := range bad {
			if code, body := do(t, g.method, u+g.path, h...); code != 401 || !strings.Contains(body, "bearer token required") {
				t.Fatalf("%s %s with %q = %d %q; want 401", g.method, g.path, h, code, body)
			}
		}
		// An empty Authorization header does not fall back to the query.
		sep := "?"
		if strings.Contains(g.path, "?") {
			sep = "&"
		}
		want(t, g.method, u+g.path+sep+"access_token="+token, 401, "", "Authorization", "")
		want(t, g.method, u+g.path+sep+"access_token=wrong", 401, "")
		want(t, g.method, u+g.path+sep+"access_token=", 401, "")
		want(t, g.method, u+g.path+sep+"access_token="+token+"&access_token="+token, 401, "")
	}
	want(t, "GET", u+"/ecv", 200, monitor.BodyUp)
	if got := f.done(); len(got) != 0 {
		t.Fatalf("requests without the token ran actions %v", got)
	}
	want(t, "POST", u+"/debug/api/workers/101/pause", 200, `"ok": true`, "Authorization", "Bearer "+token)
	want(t, "POST", u+"/debug/api/workers/101/resume?access_token="+url.QueryEscape(token), 200, `"ok": true`)
	want(t, "GET", u+"/status", 200, `"status.os"`, "Authorization", "Bearer "+token)
	for _, p := range []string{"/ecv", "/livez", "/debug", "/debug/api/overview", "/debug/api/workers", "/deps", "/metrics"} {
		if code, body := do(t, "GET", u+p); code == 401 || code == 403 {
			t.Errorf("GET %s without token = %d %q; want open", p, code, body)
		}
	}
	var o map[string]any
	getJSON(t, u+"/debug/api/overview", &o)
	if o["tokenRequired"] != true {
		t.Errorf("overview tokenRequired = %v; want true", o["tokenRequired"])
	}
}

// Start warns when any local user has control (loopback, no token) and when
// the monitor is bound beyond loopback without a token; not with a token.
func TestStartWarnsWithoutToken(t *testing.T) {
	for _, c := range []struct {
		addr, token, warn string
	}{
		{"127.0.0.1:0", "", "any local user"},
		{"0.0.0.0:0", "", "beyond loopback with no token"},
		{"127.0.0.1:0", "t", ""},
		{"0.0.0.0:0", "t", ""},
	} {
		var buf bytes.Buffer
		s, err := monitor.New(newFake(101), monitor.Options{Addr: c.addr, Token: c.token,
			Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		log := buf.String()
		if c.warn == "" {
			if strings.Contains(log, "level=WARN") {
				t.Errorf("%s token=%q: log %q; want no warning", c.addr, c.token, log)
			}
		} else if !strings.Contains(log, "level=WARN") || !strings.Contains(log, c.warn) {
			t.Errorf("%s token=%q: log %q; want a WARN saying %q", c.addr, c.token, log, c.warn)
		}
		if strings.Contains(log, "token=t ") || c.token != "" && strings.Contains(log, "="+c.token+" ") {
			t.Errorf("the log shows the token: %q", log)
		}
	}
}
