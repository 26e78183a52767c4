package monitor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ECV modes of ECVOptions.Mode.
const (
	// ModeControl: the ECV answers from the cluster's own state and the
	// operator's markUp/markDown.
	ModeControl = "control"
	// ModeMonitor: each ECV request also checks an application URL through
	// a worker and answers by a validator.
	ModeMonitor = "monitor"
)

// The first word of every ECV body, for load balancers that match strings
// (F5 receive / receive-disable, HAProxy http-check expect string).
const (
	BodyUp       = "ECV UP"       // in rotation
	BodyDisabled = "ECV DISABLED" // marked down by an operator
	BodyDown     = "ECV DOWN"     // any other reason: warming, stopping, too few workers, check failed
)

// ECVOptions configures the ECV. The zero value is control mode on /ecv,
// /ecv/markUp and /ecv/markDown, down until warm, at least one active
// worker.
type ECVOptions struct {
	// Mode is ModeControl or ModeMonitor. Default ModeControl.
	Mode string

	// Root is the path load balancers check. Default "/ecv".
	Root string

	// MarkUp and MarkDown are the paths that put the cluster back in
	// rotation and take it out, by POST. Control mode only. Defaults
	// "/ecv/markUp", "/ecv/markDown".
	MarkUp, MarkDown string

	// MarkWithGET also accepts GET on MarkUp and MarkDown, as the
	// original's clients sent. A GET changing state is what an <img> of
	// any page can send: even with this option, cross-site browser
	// requests are refused (403), and the token is required when set.
	// Default false: GET answers 405.
	MarkWithGET bool

	// MinActive is the number of active (accepting) workers below which the
	// ECV answers down. Default 1; negative: no minimum.
	MinActive int

	// NotFoundWhenMarkedDown answers 404 rather than 503 while marked down,
	// for HAProxy's "http-check disable-on-404" (the server drains instead
	// of failing).
	NotFoundWhenMarkedDown bool

	// StartMarkedDown starts marked down: the cluster goes in rotation only
	// when an operator marks it up.
	StartMarkedDown bool

	// CheckURL is the application URL a monitor-mode ECV fetches (through
	// the shared socket, so a worker answers), e.g.
	// "http://127.0.0.1:8080/health". Required in monitor mode.
	CheckURL string

	// Validator judges the check in monitor mode: err is the request's
	// error (status 0, body nil). Default: no error and status 200.
	Validator func(status int, body []byte, err error) bool

	// CheckTimeout bounds the check in monitor mode. Default 2 s.
	CheckTimeout time.Duration
}

func (o ECVOptions) withDefaults() (ECVOptions, error) {
	if o.Mode == "" {
		o.Mode = ModeControl
	}
	if o.Root == "" {
		o.Root = "/ecv"
	}
	if o.MarkUp == "" {
		o.MarkUp = "/ecv/markUp"
	}
	if o.MarkDown == "" {
		o.MarkDown = "/ecv/markDown"
	}
	if o.MinActive == 0 {
		o.MinActive = 1
	}
	if o.Validator == nil {
		o.Validator = func(status int, _ []byte, err error) bool { return err == nil && status == http.StatusOK }
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 2 * time.Second
	}
	switch {
	case o.Mode != ModeControl && o.Mode != ModeMonitor:
		return o, fmt.Errorf("monitor: %w: ECV.Mode %q is not %q or %q", ErrInvalidConfig, o.Mode, ModeControl, ModeMonitor)
	case o.Mode == ModeMonitor && o.CheckURL == "":
		return o, fmt.Errorf("monitor: %w: ECV.CheckURL is empty in monitor mode", ErrInvalidConfig)
	case o.Root[0] != '/' || o.MarkUp[0] != '/' || o.MarkDown[0] != '/':
		return o, fmt.Errorf("monitor: %w: ECV paths must start with /", ErrInvalidConfig)
	case o.Root == "/":
		return o, fmt.Errorf("monitor: %w: ECV.Root \"/\" would answer every route", ErrInvalidConfig)
	case o.Root == o.MarkUp || o.Root == o.MarkDown || o.MarkUp == o.MarkDown:
		return o, fmt.Errorf("monitor: %w: ECV paths must differ", ErrInvalidConfig)
	}
	return o, nil
}

// ECVState is the ECV's answer and what it was made of.
type ECVState struct {
	Up         bool   `json:"up"`
	Mode       string `json:"mode"`
	Warm       bool   `json:"warm"`       // every initial worker listened and warmed up
	Stopping   bool   `json:"stopping"`   // a graceful stop began
	MarkedDown bool   `json:"markedDown"` // an operator marked the cluster down
	Active     int    `json:"active"`     // workers accepting now
	MinActive  int    `json:"minActive"`
	Reason     string `json:"reason"` // why it is down; "" when up
}

// reasonMarkedDown is the Reason of a state down only by an operator.
const reasonMarkedDown = "marked down"

// Disabled reports whether the ECV is down only because an operator marked
// it down (not warming, not stopping).
func (s ECVState) Disabled() bool { return !s.Up && s.Reason == reasonMarkedDown }

// Body returns the ECV's plain-text body: BodyUp, BodyDisabled or BodyDown,
// then the reason.
func (s ECVState) Body() string {
	switch {
	case s.Up:
		return BodyUp + "\n"
	case s.Disabled():
		return BodyDisabled + " " + s.Reason + "\n"
	}
	return BodyDown + " " + s.Reason + "\n"
}

// ECV is the cluster's availability for load balancers: up once every
// initial worker is warm, while enough workers are active, until a stop
// begins or an operator marks it down. Its zero value is not usable; the
// Server makes one. It is safe for concurrent use. The state lives in the
// master only: it survives the replacement of any worker.
type ECV struct {
	opts   ECVOptions
	active func() int
	down   func() string // a reason to answer down besides the rules above ("" = none); may be nil
	client *http.Client
	onMark func(up bool)

	mu         sync.Mutex
	warm       bool
	stopping   bool
	markedDown bool
}

func newECV(opts ECVOptions, active func() int, onMark func(bool)) *ECV {
	return &ECV{opts: opts, active: active, onMark: onMark, markedDown: opts.StartMarkedDown,
		client: &http.Client{Timeout: opts.CheckTimeout}}
}

// SetWarm records that every initial worker listened and warmed up (the
// master's "up" event).
func (e *ECV) SetWarm() {
	e.mu.Lock()
	e.warm = true
	e.mu.Unlock()
}

// SetStopping records that a graceful stop began (the master's "down"
// event): from now on the ECV answers down, before any worker drains.
func (e *ECV) SetStopping() {
	e.mu.Lock()
	e.stopping = true
	e.mu.Unlock()
}

// MarkUp puts the cluster back in rotation (control mode only) and reports
// it as a master.EventMarkUp event (named "markUp"; see Options.OnEvent).
func (e *ECV) MarkUp() error { return e.mark(false) }

// MarkDown takes the cluster out of rotation (control mode only) and reports
// it as a master.EventMarkDown event ("markDown"). Workers keep serving whatever traffic still arrives.
func (e *ECV) MarkDown() error { return e.mark(true) }

func (e *ECV) mark(down bool) error {
	if e.opts.Mode != ModeControl {
		return ErrNotControlMode
	}
	e.mu.Lock()
	e.markedDown = down
	e.mu.Unlock()
	if e.onMark != nil {
		e.onMark(!down)
	}
	return nil
}

// State returns the ECV's state without the monitor-mode check.
func (e *ECV) State() ECVState {
	e.mu.Lock()
	st := ECVState{Mode: e.opts.Mode, Warm: e.warm, Stopping: e.stopping, MarkedDown: e.markedDown,
		MinActive: e.opts.MinActive}
	e.mu.Unlock()
	st.Active = e.active()
	var down string
	if e.down != nil {
		down = e.down()
	}
	switch {
	case st.Stopping:
		st.Reason = "stopping"
	case !st.Warm:
		st.Reason = "warming up"
	case st.MarkedDown:
		st.Reason = reasonMarkedDown
	case e.opts.MinActive > 0 && st.Active < e.opts.MinActive:
		st.Reason = fmt.Sprintf("%d active workers, fewer than %d", st.Active, e.opts.MinActive)
	case down != "":
		st.Reason = down
	default:
		st.Up = true
	}
	return st
}

// Check returns the ECV's state; in monitor mode an up state is confirmed by
// fetching CheckURL and asking the Validator.
func (e *ECV) Check(ctx context.Context) ECVState {
	st := e.State()
	if !st.Up || e.opts.Mode != ModeMonitor {
		return st
	}
	status, body, err := e.fetch(ctx)
	if !e.opts.Validator(status, body, err) {
		st.Up = false
		switch {
		case err != nil:
			st.Reason = "check failed: " + err.Error()
		default:
			st.Reason = fmt.Sprintf("check failed: status %d", status)
		}
	}
	return st
}

func (e *ECV) fetch(ctx context.Context) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.opts.CheckURL, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// serveECV answers the ECV root: 200 and BodyUp, or 503 (404 when marked
// down and NotFoundWhenMarkedDown) and the reason. Never cached.
func (s *Server) serveECV(w http.ResponseWriter, r *http.Request) {
	st := s.ecv.Check(r.Context())
	code := http.StatusOK
	if !st.Up {
		code = http.StatusServiceUnavailable
		if st.Disabled() && s.opts.ECV.NotFoundWhenMarkedDown {
			code = http.StatusNotFound
		}
	}
	plain(w, code, st.Body())
}

// serveMark answers markUp and markDown: 200 and the new body, or 409 in
// monitor mode. It takes POST only, and GET too when withGET; any other
// method is 405 with Allow.
func (s *Server) serveMark(down, withGET bool) http.HandlerFunc {
	allow := "POST"
	if withGET {
		allow = "GET, POST"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && !(withGET && r.Method == http.MethodGet) {
			w.Header().Set("Allow", allow)
			plain(w, http.StatusMethodNotAllowed, "method not allowed: "+allow+"\n")
			return
		}
		var err error
		if down {
			err = s.ecv.MarkDown()
		} else {
			err = s.ecv.MarkUp()
		}
		if err != nil {
			plain(w, http.StatusConflict, err.Error()+"\n")
			return
		}
		plain(w, http.StatusOK, s.ecv.State().Body())
	}
}

func plain(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, body)
}
