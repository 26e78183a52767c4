package worker_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cluster2/cluster2/worker"
)

// ExampleRun is the worker side without package cluster2 (which calls Run
// for you): only meaningful in a process a cluster2 master re-executed.
func ExampleRun() {
	if !worker.IsWorker() {
		return // the master's side: see package master
	}
	w, err := worker.Run(context.Background(), worker.Config{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("hi\n")) }),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Wait(); err != nil { // drained: dismissed, SIGTERM, or master died
		log.Print(err)
	}
}

// ExampleServerConfig_RequestDeadline gives another net/http server of a
// worker's process the deadline the worker's own server has: a handler
// that has written nothing by RequestTimeout has its context cancelled and
// its client answered 503.
func ExampleServerConfig_RequestDeadline() {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // a handler waiting on something that never comes
	})
	h := worker.ServerConfig{RequestTimeout: 50 * time.Millisecond}.RequestDeadline(slow, func() {
		fmt.Println("hung") // the worker's own server counts it for the master (worker.RequestHung for a server run through Config.Serve)
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// hung
	// 503 Service Unavailable
}
