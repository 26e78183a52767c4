package worker_test

import (
	"context"
	"log"
	"net/http"

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
