package monitor_test

import (
	"sync"
	"testing"
	"time"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
)

// persistFake is a fakeSource whose cluster persists caches.
type persistFake struct {
	*fakeSource
	mu sync.Mutex
	pi monitor.PersistInfo
}

func (p *persistFake) Persist() (monitor.PersistInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pi, true
}

func (p *persistFake) set(pi monitor.PersistInfo) {
	p.mu.Lock()
	p.pi = pi
	p.mu.Unlock()
}

// A log that cannot be written takes the ECV down only when the source asks
// (Cache.DownWhilePersistFailing), with the error as the reason, and the
// dashboard's overview carries the state either way.
func TestECVDownWhilePersistFailing(t *testing.T) {
	f := &persistFake{fakeSource: newFake(101)}
	s, url := serve(t, f, monitor.Options{})
	s.HandleEvent(master.Event{Kind: master.EventUp})
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp)
	failing := monitor.PersistInfo{Attached: true, Failing: true, Error: "no space left on device", Since: time.Now(), Failures: 1}
	f.set(failing)
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp) // not asked to go down
	want(t, "GET", url+"/debug/api/overview", 200, `"failing": true`)
	failing.DownWhileFailing = true
	f.set(failing)
	want(t, "GET", url+"/ecv", 503, monitor.BodyDown+" the cache's log cannot be written: no space left on device")
	f.set(monitor.PersistInfo{Attached: true, Failures: 1, DownWhileFailing: true})
	want(t, "GET", url+"/ecv", 200, monitor.BodyUp)
	want(t, "GET", url+"/debug/api/overview", 200, `"failing": false`)
}
