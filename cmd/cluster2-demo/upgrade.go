package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/shm"
)

// upgradeTimeout bounds the upgrade command's wait for the outcome.
const upgradeTimeout = 5 * time.Minute

// upgrade asks the master of st for an in-place upgrade to the binary on
// disk (the monitor's POST /debug/api/upgrade: the master checks the binary,
// execs it with its own pid, and the new image replaces every worker), then
// waits for the upgrade's outcome in /status and checks that every worker
// serves this command's version (the command is the new binary). It
// returns nil only then; otherwise the reason: the check refused the binary,
// the new image went back to the previous one (and why), a worker serves
// another version.
func upgrade(st state, token string) error {
	if st.Monitor == "" {
		return fmt.Errorf("master %d runs no monitor server: it cannot be asked to upgrade", st.Pid)
	}
	asked := time.Now()
	var answer struct {
		Error string `json:"error"`
	}
	code, err := monitorDo(http.MethodPost, st.Monitor, "/debug/api/upgrade", token, &answer)
	if err != nil {
		return err
	}
	if code != http.StatusAccepted {
		return fmt.Errorf("master %d refused the upgrade (%d): %s", st.Pid, code, answer.Error)
	}
	fmt.Printf("master %d is upgrading in place to version %s\n", st.Pid, version)
	for deadline := asked.Add(upgradeTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !shm.ProcessAlive(st.Pid, st.Start) {
			return fmt.Errorf("master %d is gone", st.Pid)
		}
		var s map[string]json.RawMessage // status name → pid → value
		if code, err := monitorDo(http.MethodGet, st.Monitor, "/status", token, &s); err != nil || code != http.StatusOK {
			continue // the master is between images
		}
		var byPid map[string]cluster2.UpgradeStatus
		if err := json.Unmarshal(s[cluster2.StatusUpgrade], &byPid); err != nil {
			continue
		}
		u := byPid[strconv.Itoa(st.Pid)]
		if u.Started.Before(asked.Add(-time.Second)) {
			continue // the previous upgrade's, or none yet
		}
		switch u.State {
		case "done":
			return checkVersion(st, version)
		case "failed":
			return fmt.Errorf("the upgrade failed; master %d runs the previous build: %s", st.Pid, u.Error)
		}
	}
	return fmt.Errorf("no outcome of the upgrade within %v", upgradeTimeout)
}

// checkVersion asks every worker of st for GET / (new connections, until
// each active worker has answered) and returns an error unless each says
// want.
func checkVersion(st state, want string) error {
	var workers []struct {
		Pid int `json:"pid"`
	}
	if code, err := monitorDo(http.MethodGet, st.Monitor, "/debug/api/workers", "", &workers); err != nil || code != http.StatusOK {
		return fmt.Errorf("the monitor's workers: %d, %v", code, err)
	}
	left := map[int]bool{}
	for _, w := range workers {
		left[w.Pid] = true
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; len(left) > 0 && i < 200*len(workers); i++ {
		resp, err := c.Get("http://" + st.Addr + "/")
		if err != nil {
			return err
		}
		var v struct {
			Pid     int    `json:"pid"`
			Version string `json:"version"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if v.Version != want {
			return fmt.Errorf("worker %d serves version %q, not %q", v.Pid, v.Version, want)
		}
		delete(left, v.Pid)
	}
	if len(left) > 0 {
		return fmt.Errorf("workers %v did not answer", left)
	}
	fmt.Printf("every worker (%d) of master %d serves version %s\n", len(workers), st.Pid, want)
	return nil
}

// monitorDo sends one request to the monitor with the bearer token, decodes
// its JSON answer into v and returns the status code.
func monitorDo(method, monitor, path, token string, v any) (int, error) {
	return monitorDoWithin(30*time.Second, method, monitor, path, token, v)
}

// monitorDoWithin is monitorDo with its own bound on the whole exchange.
func monitorDoWithin(timeout time.Duration, method, monitor, path, token string, v any) (int, error) {
	req, err := http.NewRequest(method, "http://"+monitor+path, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, v); err != nil {
		return resp.StatusCode, fmt.Errorf("monitor %s: %s: %w (%s)", path, resp.Status, err, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode, nil
}
