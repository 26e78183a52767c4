package cluster2_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/cluster2/cluster2/internal/clustertest"
)

// chromium finds Debian's chromium (or another Chrome) on PATH.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestDashboardInBrowser drives headless chromium against a real cluster:
// the page shows one row per worker, the rows update, a pause clicked on
// the page pauses that worker, and its + and − buttons scale the cluster. A screenshot is written to the test's temp
// directory.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium()
	if exe == "" {
		msg := "!!! chromium is not installed: the dashboard's browser test DID NOT RUN (apt-get install -y chromium) !!!"
		fmt.Fprintln(os.Stderr, msg)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " — CI must have it (.ci/run installs it)")
		}
		t.Skip(msg)
	}
	const token = "browser-token"
	c := startMonitored(t, 2, clustertest.EnvHeartbeat+"=300ms", clustertest.EnvToken+"="+token, clustertest.EnvVersion+"=v3.2-browser")
	c.waitReady()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	// The first Run starts the browser: no timeout on its context (it would
	// stop the browser); each later step gets its own.
	if err := chromedp.Do(ctx, chromedp.Navigate(c.mon+"/debug")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	step := func() context.Context {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		t.Cleanup(cancel)
		return sctx
	}
	// poll evaluates js until it returns true.
	poll := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(step(), chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, js string) string {
		t.Helper()
		v, err := chromedp.Run(step(), chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	poll("one row per worker", `document.querySelectorAll('#workers tbody tr[data-pid]').length === 2`)
	// Each worker's version (from its control block) in its column, the
	// master's in the header.
	poll("the version column", `[...document.querySelectorAll('#workers tbody tr[data-pid] td.version')].every(td => td.textContent === 'v3.2-browser')`+
		` && document.querySelector('#workers thead').textContent.includes('version')`)
	// Each worker's accepts (and its share of them) and requests, live from
	// its control block.
	poll("the accepts column", `[...document.querySelectorAll('#workers tbody tr[data-pid] td.accepts')].every(td => /^\d+ \(\d+%\)$/.test(td.textContent))`+
		` && document.querySelector('#workers thead').textContent.includes('accepts')`)
	poll("the master's version", `document.querySelector('#master-version').textContent === 'v3.2-browser'`)
	pids, err := chromedp.Run(step(), chromedp.Evaluate[[]string](`[...document.querySelectorAll('#workers tbody tr[data-pid]')].map(r => r.dataset.pid)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range c.workers() {
		found := false
		for _, p := range pids {
			found = found || p == strconv.Itoa(w.Pid)
		}
		if !found {
			t.Fatalf("the page shows pids %v; worker %d missing", pids, w.Pid)
		}
	}

	// The rows update: new snapshots arrive, the charts fill with heartbeats
	// and the uptime cells change.
	first := eval("snapshot count", `document.body.dataset.snapshots`)
	uptime := eval("uptime", `document.querySelector('#workers td.uptime').textContent`)
	poll("new snapshots", `Number(document.body.dataset.snapshots) >= `+first+` + 2`)
	poll("charts filled", `[...document.querySelectorAll('#workers td.rps-chart polyline')].every(p => p.getAttribute('points').split(' ').length >= 3)`)
	poll("uptime changes", `document.querySelector('#workers td.uptime').textContent !== `+strconv.Quote(uptime))
	t.Logf("snapshots rendered: %s, then %s", first, eval("snapshot count", `document.body.dataset.snapshots`))
	if ecv := eval("ECV badge", `document.querySelector('#ecv').textContent`); ecv != "ECV UP" {
		t.Fatalf("ECV badge = %q; want ECV UP", ecv)
	}

	// Pause the first worker from the page: the monitor has a token, which
	// the page sends from the tab's storage (where its token box or its
	// prompt puts it).
	pid := pids[0]
	if code, body := request("POST", c.mon+"/debug/api/workers/"+pid+"/pause"); code != 401 {
		t.Fatalf("pause without the token = %d %q; want 401", code, body)
	}
	eval("store the token", `sessionStorage.setItem('cluster2-token', `+strconv.Quote(token)+`), 'ok'`)
	if err := chromedp.Do(step(), chromedp.Navigate(c.mon+"/debug")); err != nil {
		t.Fatalf("reload the dashboard: %v", err)
	}
	poll("rows after reload", `document.querySelectorAll('#workers tbody tr[data-pid]').length === 2`)
	// The rows are rendered anew with every snapshot: a button found may be
	// replaced before the click reaches it ("Could not find node with given
	// id"), so the click is tried again, a few times.
	for range 10 {
		if err = chromedp.Do(step(), chromedp.Click(chromedp.CSS(`button[data-action="pause"][data-pid="`+pid+`"]`))); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("click pause: %v", err)
	}
	poll("the row shows paused", `document.querySelector('tr[data-pid="`+pid+`"]').dataset.state === 'paused'`)
	for _, w := range c.workers() {
		if strconv.Itoa(w.Pid) == pid && w.State != "paused" {
			t.Fatalf("worker %s is %s after the page's pause; want paused", pid, w.State)
		}
	}

	// The page's profile links carry the token (a link cannot send a header).
	poll("profile links", `!!document.querySelector('tr[data-pid="`+pid+`"] a[data-profile="heap"]')`)
	href := eval("heap link", `document.querySelector('tr[data-pid="`+pid+`"] a[data-profile="heap"]').href`)
	if code, body := get(href); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Fatalf("the page's heap link %s = %d; want the profile", href, code)
	}

	png, err := chromedp.Run(step(), chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("CLUSTER2_SCREENSHOT"); keep != "" {
		os.WriteFile(keep, png, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// Upgrade the master from the page (the test binary execs itself: a good
	// new build): the badge says so, the page's event stream comes back on
	// the same monitor socket, and the rows show two new workers.
	if code, body := request("POST", c.mon+"/debug/api/workers/"+pid+"/resume?access_token="+token); code != 200 {
		t.Fatalf("resume: %d %q", code, body)
	}
	poll("the row shows active", `document.querySelector('tr[data-pid="`+pid+`"]').dataset.state === 'active'`)

	// Scale from the page: + adds a worker (a third row), − drains one.
	poll("the scale buttons", `!document.querySelector('#scale-actions').hidden && document.querySelector('#worker-count').textContent.includes('target 2')`)
	for _, sc := range []struct {
		button string
		rows   int
	}{{"#scale-up", 3}, {"#scale-down", 2}} {
		if err := chromedp.Do(step(), chromedp.Click(chromedp.CSS(sc.button))); err != nil {
			t.Fatalf("click %s: %v", sc.button, err)
		}
		poll(fmt.Sprintf("%d rows after %s", sc.rows, sc.button), fmt.Sprintf(`document.querySelectorAll('#workers tbody tr[data-pid]').length === %d`+
			` && document.querySelector('#worker-count').textContent.includes('target %d')`, sc.rows, sc.rows))
	}
	if n := len(c.workers()); n != 2 {
		t.Fatalf("%d workers after the page's + and −; want 2", n)
	}

	eval("accept the confirmation", `window.confirm = () => true, 'ok'`)
	if err := chromedp.Do(step(), chromedp.Click(chromedp.CSS("#upgrade-master"))); err != nil {
		t.Fatalf("click upgrade: %v", err)
	}
	// An upgrade replaces both workers: a loaded machine (-race, load 25)
	// takes longer than a step's 30 s.
	uctx, ucancel := context.WithTimeout(ctx, 3*time.Minute)
	defer ucancel()
	if _, err := chromedp.Run(uctx, chromedp.Poll[bool](`!document.querySelector('#upgrade').hidden && document.querySelector('#upgrade').textContent === 'upgraded'`,
		chromedp.WithPollingTimeout(3*time.Minute))); err != nil {
		t.Fatalf("the upgrade badge says upgraded: %v (badge %q)", err, eval("badge", `document.querySelector('#upgrade').textContent + ' ' + document.querySelector('#upgrade').title`))
	}
	poll("two new workers", `(() => { const ps = [...document.querySelectorAll('#workers tbody tr[data-pid]')].map(r => r.dataset.pid);`+
		` return ps.length === 2 && !ps.some(p => `+toJSArray(pids)+`.includes(p)); })()`)
}

// toJSArray is a JavaScript array literal of strings.
func toJSArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ",") + "]"
}
