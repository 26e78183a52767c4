package cluster2_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/cluster2/cluster2/internal/clustertest"
	"github.com/cluster2/cluster2/internal/xtesting"
)

func TestMain(m *testing.M) {
	xtesting.Main(m, map[string]func(){"cluster": clustertest.Child, "runtime": childRuntime, "allhosts": childAllHosts})
}

// wait bounds what the cluster tests wait for.
const wait = 30 * time.Second

// testCluster is the plain test cluster (clustertest.Child) in child
// processes: the test binary re-executed as the master, which re-executes it
// as workers.
type testCluster struct {
	*clustertest.Process
	t *testing.T
}

// startCluster starts a master with env and waits until Listen returned in
// it (every initial worker listening and warmed up).
func startCluster(t *testing.T, env ...string) *testCluster {
	t.Helper()
	return &testCluster{clustertest.Start(t, "cluster", env...), t}
}

// events returns the names of the master's lifecycle events so far.
func (tc *testCluster) events() []string {
	tc.t.Helper()
	var ev []string
	if err := tc.Control("/events", &ev); err != nil {
		tc.t.Fatalf("events: %v", err)
	}
	return ev
}

// rawConn dials the cluster and returns the connection with a reader.
func (tc *testCluster) rawConn() (net.Conn, *bufio.Reader) {
	tc.t.Helper()
	c, err := net.Dial("tcp", tc.Addr)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}
