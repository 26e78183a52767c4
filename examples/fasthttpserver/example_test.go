package fasthttpserver_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	cluster2 "github.com/cluster2/cluster2"
	"github.com/valyala/fasthttp"
)

// handle answers every request with the serving worker's pid, and counts
// it in the worker's heartbeat (the monitor's request metrics), which
// cannot see fasthttp's requests by itself.
func handle(ctx *fasthttp.RequestCtx) {
	t := time.Now()
	ctx.SetContentType("application/json")
	fmt.Fprintf(ctx, "{\"pid\":%d}\n", os.Getpid())
	cluster2.CountRequest(time.Since(t), false)
}

// config serves fasthttp on addr in every worker. The same main runs in the
// master, where the server is made but never served.
func config(addr string) cluster2.Config {
	s := &fasthttp.Server{
		Handler: handle,
		// fasthttp's own limits (Config.Server's are net/http's).
		IdleTimeout:  75 * time.Second,
		ReadTimeout:  60 * time.Second,
		WriteTimeout: 60 * time.Second,
		// A draining worker's responses say "Connection: close": the client
		// reconnects, to another worker, instead of finding its kept
		// connection closed under its next request.
		CloseOnShutdown: true,
	}
	return cluster2.Config{
		Addr: addr,
		// Serve returns once the worker closes ln (warm-up over, pause,
		// drain): fasthttp.Server.Serve may be called again with another one.
		Serve: func(_ context.Context, ln net.Listener) error { return s.Serve(ln) },
		// Drain answers the requests in flight (with "Connection: close"),
		// closes idle connections, and waits for the rest until the drain's
		// deadline.
		Drain: s.ShutdownWithContext,
		// WarmUp calls the worker's own server on its private address before
		// it joins the shared socket.
		WarmUp: func(ctx context.Context, addr string) error {
			deadline, _ := ctx.Deadline()
			status, _, err := fasthttp.GetDeadline(nil, "http://"+addr+"/", deadline)
			if err == nil && status != fasthttp.StatusOK {
				err = fmt.Errorf("warm-up: status %d", status)
			}
			return err
		},
	}
}

// Example runs a fasthttp server as the workers of a cluster: the whole main
// of the program. (Compile-only: it re-executes the binary.)
func Example() {
	cfg := config(":8080")
	cfg.Workers = 2
	c, err := cluster2.Listen(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%v up", c) // master: every worker serves, warmed up
	c.Wait()               // SIGHUP: a rolling restart; SIGTERM: a graceful stop
}
