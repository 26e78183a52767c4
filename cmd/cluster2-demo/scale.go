package main

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// scaleTimeout bounds the scale command's wait: new workers warm up one at
// a time, removed ones drain within the master's StopTimeout.
const scaleTimeout = 10 * time.Minute

// scale asks the master of st for n workers (the monitor's POST
// /debug/api/scale?workers=N) and waits until the cluster has them: new
// workers warmed up and listening, removed ones drained and gone. It
// returns the master's reason when it refuses (above the ceiling, below 1,
// an upgrade under way) or a new worker fails.
func scale(st state, token string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("scale takes the number of workers: cluster2-demo scale N")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("scale %q: not a number of workers", args[0])
	}
	if st.Monitor == "" {
		return fmt.Errorf("master %d runs no monitor server: scale it with SIGTTIN (+1) and SIGTTOU (-1)", st.Pid)
	}
	var answer struct {
		Error string `json:"error"`
	}
	code, err := monitorDoWithin(scaleTimeout, http.MethodPost, st.Monitor, "/debug/api/scale?workers="+strconv.Itoa(n), token, &answer)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("master %d refused to scale to %d workers (%d): %s", st.Pid, n, code, answer.Error)
	}
	fmt.Printf("master %d runs %d workers\n", st.Pid, n)
	return nil
}
