package cluster2

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/emitter"
	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/shm"
	"github.com/cluster2/cluster2/status"
)

// TestLifecycleOnePath checks the master's one path of lifecycle events: the
// subscribers in their documented order, the user's hook last (it finds the
// monitor's bookkeeping of the event done), and the ECV's marks, made by the
// monitor, delivered through the same list once: to the emitter (published
// to this process), to the dashboard's feed, to the user's hook.
func TestLifecycleOnePath(t *testing.T) {
	c, err := Config{Handler: http.NotFoundHandler(), Addr: "127.0.0.1:0", MonitorAddr: "127.0.0.1:0",
		Monitor: MonitorConfig{NoProfiles: true}, Logger: slog.New(slog.DiscardHandler)}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	a, err := shm.Create(shm.Options{Size: 8 << 20, Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	self, err := a.Self()
	if err != nil {
		t.Fatal(err)
	}
	em, err := emitter.New(nil) // not the process's default: this test leaves the defaults alone
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	reg := status.New(em)
	defer reg.Close()
	in := &instances{em: em, reg: reg}
	ew, err := startEmitterMaster(t.Context(), c, a, self, in)
	if err != nil {
		t.Fatal(err)
	}
	defer ew.close()
	published := make(chan struct{}, 4)
	in.em.On("markDown", func(emitter.Event) { published <- struct{}{} })
	defer in.em.RemoveAll("markDown")

	var mon *monitorRuntime
	var hooked []string // what the hook saw: each event, with the ECV's state then
	events := &lifecycle{emitter: ew, user: func(e Event) {
		st := mon.srv.ECV().State()
		hooked = append(hooked, e.Name()+" warm="+boolString(st.Warm)+" markedDown="+boolString(st.MarkedDown))
	}}
	if mon, err = startMonitor(c, &net.TCPAddr{}, a, in, events, nil); err != nil {
		t.Fatal(err)
	}
	defer mon.close()

	var names []string
	for _, s := range events.subscribers() {
		names = append(names, s.name)
	}
	if got, want := strings.Join(names, ", "), "emitter, monitor, profile sockets, service manager, Config.OnEvent"; got != want {
		t.Fatalf("subscribers: %s; want %s", got, want)
	}

	events.deliver(Event{Kind: master.EventUp, Time: time.Now()})
	if err := mon.srv.ECV().MarkDown(); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(hooked, "; "), "up warm=true markedDown=false; markDown warm=true markedDown=true"; got != want {
		t.Fatalf("the hook saw %s; want %s", got, want)
	}
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("markDown was not published through the emitter")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/debug/api/events", nil)
	req.Host = "127.0.0.1"
	mon.srv.Handler().ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	if n := strings.Count(string(body), `"name": "markDown"`); n != 1 {
		t.Fatalf("the dashboard's feed has markDown %d times; want once: %s", n, body)
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
