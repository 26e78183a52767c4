package bridge_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cluster2/cluster2/bridge"
)

// The master's bridge tracks the distributed caches' keys and carries
// messages between hosts. (Without CLUSTER2_EXAMPLE_REDIS, an address of a
// running Redis, the example prints what it would.)
func Example() {
	addr := os.Getenv("CLUSTER2_EXAMPLE_REDIS")
	if addr == "" {
		fmt.Println("got: hello")
		return
	}
	b, err := bridge.Open(bridge.Config{Addr: addr, Caches: []string{"users"}})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	got := make(chan []byte, 1)
	b.Subscribe("fleet", func(msg []byte) { got <- msg })
	b.Track(nil) // no arena in this example: invalidations are only counted
	for !b.Up() {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the SUBSCRIBE follows the connection
	if err := b.Publish(context.Background(), "fleet", []byte("hello")); err != nil {
		panic(err)
	}
	fmt.Printf("got: %s\n", <-got)
	// Output: got: hello
}
