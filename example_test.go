package cluster2_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/cluster2/cluster2/master"
)

// ExampleListen is the whole main of a prefork server: the same code runs in
// the master and in every worker. (Compile-only: it re-executes the binary.)
func ExampleListen() {
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Workers: 2,
		Addr:    ":8080",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %d\n", os.Getpid())
		}),
		WarmUp: func(ctx context.Context, addr string) error {
			// Prime caches through the worker's own handler before it joins.
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				return err
			}
			return resp.Body.Close()
		},
	})
	if err != nil {
		log.Fatal(err) // e.g. the port is busy
	}
	// Master: every worker is listening and warmed up. Worker: this one is.
	log.Printf("%v up", c)
	c.Wait() // until SIGTERM/SIGINT (master) or a dismissal (worker)
}

// ExampleCluster_RollingRestart replaces every worker, one at a time, from
// the master; SIGHUP does the same.
func ExampleCluster_RollingRestart() {
	var c *cluster2.Cluster // from Listen, in the master
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.RollingRestart(ctx); err != nil {
		log.Printf("some workers were not replaced (they keep serving): %v", err)
	}
}

// ExampleCluster_Workers prints the state and load of each worker (master).
func ExampleCluster_Workers() {
	var c *cluster2.Cluster // from Listen, in the master
	for _, w := range c.Workers() {
		fmt.Printf("pid %d slot %d %v: %.0f req/s, %d MiB\n",
			w.Pid, w.Slot, w.State, w.Heartbeat.RPS, w.Heartbeat.RSS>>20)
	}
}

// ExampleConfig_Validate shows that a bad field is named in the error.
func ExampleConfig_Validate() {
	err := cluster2.Config{Handler: http.NotFoundHandler(), Workers: -1}.Validate()
	fmt.Println(err)
	// Output: master: invalid configuration: Workers -1 is negative
}

// ExampleConfig_recycling recycles each worker after about 10,000
// requests (its own limit drawn in [10000, 10500], so that workers are not
// replaced together), and replaces a worker once 3 of its requests ran past
// a 30 s deadline within a minute: each is answered 503 if its handler had
// written nothing. Both go through the death queue: successor first, the
// old worker drains. (Compile-only: it re-executes the binary.)
func ExampleConfig_recycling() {
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hi") }),
		MaxRequests:       10000,
		MaxRequestsJitter: 500,
		Server:            cluster2.ServerConfig{RequestTimeout: 30 * time.Second},
		HungRequests:      3, // the default
		HungWindow:        time.Minute,
		OnEvent: func(e cluster2.Event) {
			if e.Kind == master.EventRecycled {
				log.Printf("worker %d recycled: %v", e.Pid, e.Reason) // max-requests, hung-requests, …
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	c.Wait()
}

// ExampleConfig_Validate_jitter: a jitter needs a MaxRequests to spread.
func ExampleConfig_Validate_jitter() {
	err := cluster2.Config{Handler: http.NotFoundHandler(), MaxRequestsJitter: 100}.Validate()
	fmt.Println(err)
	// Output: master: invalid configuration: MaxRequestsJitter 100 is set without MaxRequests
}

// ExampleLayout_Compatible compares this build's layout with another
// build's (as a check reports it): a region of another version refuses.
func ExampleLayout_Compatible() {
	mine := cluster2.ThisLayout()
	theirs := mine
	theirs.Cache++ // a build whose cache space changed
	err := mine.Compatible(theirs)
	fmt.Println(errors.Is(err, cluster2.ErrLayoutMismatch), mine.Compatible(mine) == nil)
	// Output: true true
}

// ExampleCheck checks a new build before deploying it: the binary runs in
// check mode (its Listen prints its build and exits) and must speak this
// build's layout. (Compile-only: it runs a binary.)
func ExampleCheck() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := cluster2.Check(ctx, "/srv/app/bin/app.new", nil, nil)
	if err != nil {
		log.Fatal(err) // wraps cluster2.ErrCheckFailed: missing, not executable, exits, another layout …
	}
	fmt.Println("ready to deploy", info.Version, info.ShortRevision(), info.Layout)
}

// ExampleConfig_serve runs a server other than net/http as the workers: a
// line protocol (each line in is answered with the serving worker's pid). A
// gRPC or fasthttp server plugs in the same way (see examples/grpcserver and
// examples/fasthttpserver). (Compile-only: it re-executes the binary.)
func ExampleConfig_serve() {
	var conns sync.WaitGroup
	c, err := cluster2.Listen(context.Background(), cluster2.Config{
		Addr: ":7000",
		// Serve is called on the warm-up address, then on the shared
		// socket, again after a resume; it returns once the worker closes ln.
		Serve: func(_ context.Context, ln net.Listener) error {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return err
				}
				conns.Go(func() {
					defer conn.Close()
					for sc := bufio.NewScanner(conn); sc.Scan(); {
						t := time.Now()
						fmt.Fprintf(conn, "%d\n", os.Getpid())
						cluster2.CountRequest(time.Since(t), false) // the request metrics
					}
				})
			}
		},
		// Drain waits for the clients to hang up; the worker closes what is
		// still open when the drain's deadline passes.
		Drain: func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { conns.Wait(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	c.Wait()
}
