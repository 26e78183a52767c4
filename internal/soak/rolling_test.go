package soak

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
)

// TestSoakRollingRestarts restarts every worker of the plain test cluster
// (clustertest.Child, two workers) again and again for 30 s under load: 16
// clients on keep-alive connections, then 16 on a new connection per request
// (the design experiment replaced a worker every 250 ms), and wants zero
// failed requests. Run with CLUSTER2_SOAK=1.
func TestSoakRollingRestarts(t *testing.T) {
	if os.Getenv("CLUSTER2_SOAK") == "" || testing.Short() {
		t.Skip("soak test: set CLUSTER2_SOAK=1")
	}
	for _, keepAlive := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepalive=%v", keepAlive), func(t *testing.T) {
			tc := clustertest.Start(t, "plain", clustertest.EnvWorkers+"=2")
			stop := make(chan struct{})
			n, wg := tc.Load(16, keepAlive, stop)
			restarts := 0
			for end := time.Now().Add(30 * time.Second); time.Now().Before(end); restarts++ {
				if err := tc.Control("/rolling", nil); err != nil {
					t.Fatalf("rolling restart %d: %v", restarts, err)
				}
			}
			close(stop)
			wg.Wait()
			t.Logf("%d rolling restarts (%d replacements): %d requests, %d failed", restarts, 2*restarts, n.Done.Load(), n.Failed.Load())
			if n.Failed.Load() != 0 {
				t.Errorf("%d failed requests; want 0; first: %s", n.Failed.Load(), strings.Join(n.Errs(), " | "))
			}
		})
	}
}
