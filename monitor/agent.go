package monitor

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cluster2/cluster2/internal/backoff"
	"github.com/cluster2/cluster2/internal/xtime"
)

// AgentLine returns the HAProxy agent-check answer for st: "ready up W%"
// when up (W: the share of expected workers that are active, at least 1%),
// "drain" when marked down (no new sessions, existing ones finish), "maint"
// while stopping, "down" otherwise (warming, too few workers).
func AgentLine(st ECVState, expected int) string {
	switch {
	case st.Up:
		w := 100
		if expected > 0 && st.Active < expected {
			w = max(1, 100*st.Active/expected)
		}
		return fmt.Sprintf("ready up %d%%\n", w)
	case st.Stopping:
		return "maint\n"
	case st.Disabled():
		return "drain\n"
	}
	return "down\n"
}

// serveAgent answers one line per connection until ln is closed. An accept
// error other than the listener's closing (EMFILE, ENFILE: the master is out
// of descriptors) is retried after a back-off (5 ms doubling to 1 s),
// logged at most every 10 s: the agent check must come back once
// descriptors are free.
func (s *Server) serveAgent(ln net.Listener) {
	defer s.bg.Done()
	retry := backoff.Backoff{First: 5 * time.Millisecond, Factor: 2, Max: time.Second}
	var lastLog time.Time
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d := retry.Next()
			if time.Since(lastLog) >= 10*time.Second {
				s.log.Error("monitor: agent-check accept (retrying)", "err", err, "retryIn", d)
				lastLog = time.Now()
			}
			if !xtime.Sleep(s.stop, d) {
				return
			}
			continue
		}
		retry.Reset()
		expected := s.opts.ExpectedWorkers
		if ss, ok := s.src.(ScaleSource); ok {
			expected = ss.Scaling().Target // 0 before the master is up
		}
		if expected <= 0 {
			expected = len(s.src.Workers())
		}
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte(AgentLine(s.ecv.State(), expected)))
		c.Close()
	}
}
