package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// send sends one request on a new connection and returns the status, the
// Allow header and the decoded JSON body (nil for HEAD and plain text).
func send(t *testing.T, method, url string, body io.Reader, header ...string) (int, string, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	tr := &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var v map[string]any
	b, _ := io.ReadAll(resp.Body)
	if method != "HEAD" && len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: status %d, not JSON: %q", method, url, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, resp.Header.Get("Allow"), v
}

// Item 16 of issue 13: the client's errors are 4xx, not 500, and HEAD of a
// missing key neither runs the loader nor stores anything.
func TestDemoClientErrors(t *testing.T) {
	d := startDemo(t, "")
	base := "http://" + d.st.Addr
	long := strings.Repeat("k", 1025)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		if code, _, v := send(t, m, base+"/cache/"+long, strings.NewReader("v")); code != 414 {
			t.Errorf("%s of a 1025-byte key = %d %.80v; want 414", m, code, v["error"])
		}
	}
	if code, _, v := send(t, "GET", base+"/cache/"+strings.Repeat("k", 1024), nil); code != 200 {
		t.Errorf("GET of a 1024-byte key = %d %v; want 200", code, v)
	}
	big := bytes.Repeat([]byte("v"), 1<<20+1)
	// With its length announced, the demo refuses it before reading (the
	// client, asking 100-continue, sends nothing; one that does not ask may
	// see a reset while it still writes, as with any server).
	if code, _, v := send(t, "PUT", base+"/cache/big", bytes.NewReader(big), "Expect", "100-continue"); code != 413 {
		t.Errorf("PUT of 1 MiB + 1 = %d %v; want 413", code, v)
	}
	// Chunked, no Content-Length: still 413, and nothing stored.
	if code, _, v := send(t, "PUT", base+"/cache/big", io.MultiReader(bytes.NewReader(big))); code != 413 {
		t.Errorf("chunked PUT of 1 MiB + 1 = %d %v; want 413", code, v)
	}
	// Under the demo's limit but over the cache's (a quarter of a shard):
	// the cache's ErrValueTooLarge is a 413 too.
	if code, _, v := send(t, "PUT", base+"/cache/big", bytes.NewReader(big[:900<<10])); code != 413 {
		t.Errorf("PUT of 900 KiB = %d %v; want 413", code, v)
	}
	if code, _, _ := send(t, "HEAD", base+"/cache/big", nil); code != 404 {
		t.Errorf("HEAD after refused PUTs = %d; want 404", code)
	}
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/cache/k", "GET, HEAD, PUT, DELETE"}, {"PATCH", "/cache/k", "GET, HEAD, PUT, DELETE"},
		{"POST", "/", "GET, HEAD"}, {"DELETE", "/", "GET, HEAD"},
	} {
		code, allow, v := send(t, c.method, base+c.path, strings.NewReader("x"))
		if code != 405 || allow != c.allow {
			t.Errorf("%s %s = %d Allow %q %v; want 405 Allow %q", c.method, c.path, code, allow, v, c.allow)
		}
	}
	if code, _, _ := send(t, "GET", base+"/nope", nil); code != 404 {
		t.Errorf("GET /nope = %d; want 404", code)
	}
	// HEAD of a missing key: 404, and it stays missing (the loader did not
	// run and store its value), on either worker.
	for range 4 {
		if code, _, _ := send(t, "HEAD", base+"/cache/absent", nil); code != 404 {
			t.Fatalf("HEAD of a missing key = %d; want 404 (and no value stored)", code)
		}
	}
	if code, _, v := send(t, "PUT", base+"/cache/here", strings.NewReader("v")); code != 200 {
		t.Fatalf("PUT = %d %v", code, v)
	}
	if code, _, _ := send(t, "HEAD", base+"/cache/here", nil); code != 200 {
		t.Errorf("HEAD of a stored key = %d; want 200", code)
	}
	if code, _, v := send(t, "GET", base+"/cache/absent", nil); code != 200 || !strings.HasPrefix(v["value"].(string), "loaded by pid ") {
		t.Errorf("GET of the missing key = %d %v; want the loader's value", code, v)
	}
}

// Item 10 of issue 13, the demo's part: the monitor's token comes from
// -token or CLUSTER2_MONITOR_TOKEN, and another local user without it
// cannot mark the node down.
func TestDemoMonitorToken(t *testing.T) {
	for _, c := range []struct {
		name, args string
		env        []string
	}{
		{"flag", "-token flagtok", nil},
		{"env", "", []string{tokenEnv + "=envtok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := startDemoIn(t, t.TempDir(), c.args, c.env...)
			tok := map[string]string{"flag": "flagtok", "env": "envtok"}[c.name]
			mon := "http://" + d.st.Monitor
			if code, _, _ := send(t, "POST", mon+"/ecv/markDown", nil); code != 401 {
				t.Fatalf("markDown without the token = %d; want 401", code)
			}
			if code, _, _ := send(t, "POST", mon+"/ecv/markDown", nil, "Authorization", "Bearer nope"); code != 401 {
				t.Fatalf("markDown with a wrong token = %d; want 401", code)
			}
			req, _ := http.NewRequest("GET", mon+"/ecv", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("ECV after refused markDowns = %d; want 200", resp.StatusCode)
			}
			req, _ = http.NewRequest("POST", mon+"/ecv/markDown", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err = http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("markDown with the token = %d; want 200", resp.StatusCode)
			}
			if err := control("status", d.rundir, ""); err != nil {
				t.Errorf("status with a token set: %v", err)
			}
		})
	}
}
