package monitor_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"

	"github.com/cluster2/cluster2/master"
	"github.com/cluster2/cluster2/monitor"
)

// The ECV follows the master's lifecycle events and the operator's marks.
func ExampleServer_HandleEvent() {
	src := newFake(101) // any monitor.Source: package cluster2 provides the master's
	s, err := monitor.New(src, monitor.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ecv := func() {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/ecv", nil))
		body, _ := io.ReadAll(rec.Body)
		fmt.Printf("%d %s", rec.Code, body)
	}
	ecv()
	s.HandleEvent(master.Event{Kind: master.EventUp}) // every initial worker warmed up
	ecv()
	s.ECV().MarkDown()
	ecv()
	s.HandleEvent(master.Event{Kind: master.EventDown}) // a graceful stop began
	ecv()
	// Output:
	// 503 ECV DOWN warming up
	// 200 ECV UP
	// 503 ECV DISABLED marked down
	// 503 ECV DOWN stopping
}

// A Server is started on its address and closed with the cluster.
func ExampleServer_Start() {
	s, err := monitor.New(newFake(), monitor.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}
	defer s.Close()
	fmt.Println(s.Addr() != nil)
	// Output: true
}
