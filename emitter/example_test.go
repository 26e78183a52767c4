package emitter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cluster2/cluster2/emitter"
)

// Example registers a handler and emits to it. Outside a cluster an emitter
// delivers within its process; in a cluster (the runtime attaches the
// default emitter in every process) the same Emit also reaches every
// worker from the master, or the master from a worker.
func Example() {
	em, _ := emitter.New(nil)
	defer em.Close()
	done := make(chan struct{})
	em.On("greet", func(e emitter.Event) {
		var who string
		var n int
		e.Decode(&who, &n)
		fmt.Println(e.Name, who, n)
		close(done)
	})
	em.Emit("greet", "world", 42)
	<-done
	// Output:
	// greet world 42
}

// ExampleEmitter_To sends to chosen targets: a worker by pid, every worker,
// the master, or this process.
func ExampleEmitter_To() {
	em, _ := emitter.New(nil)
	defer em.Close()
	got := make(chan emitter.Event, 1)
	em.Once("reload", func(e emitter.Event) { got <- e })
	em.To(emitter.Self, emitter.Workers).Emit("reload", "config.yaml")
	e := <-got
	file, _ := emitter.Arg[string](e, 0)
	fmt.Println(file)
	// Output:
	// config.yaml
}

// ExampleEmitter_EmitContext bounds the wait for room in a full ring or
// listener queue.
func ExampleEmitter_EmitContext() {
	em, _ := emitter.New(nil)
	defer em.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := em.EmitContext(ctx, "tick", time.Now().Unix()); err != nil {
		fmt.Println("not delivered:", err)
	}
	fmt.Println(em.Stats().Emitted)
	// Output:
	// 1
}

// ExampleEmitter_Off stops a listener.
func ExampleEmitter_Off() {
	em, _ := emitter.New(nil)
	defer em.Close()
	l := em.On("tick", func(emitter.Event) {})
	em.Off(l)
	fmt.Println(em.Listeners("tick"))
	// Output:
	// 0
}

// hostsBackplane joins emitters of several hosts in this example; in a
// cluster2 program package bridge does it on Redis pub/sub.
type hostsBackplane []*emitter.Emitter

func (b hostsBackplane) Publish(_ context.Context, msg []byte) error {
	for _, em := range b {
		if err := em.FromBackplane(msg); err != nil {
			return err
		}
	}
	return nil
}

// ExampleAllHosts sends an event to every process of every host: each
// host's master publishes it to the backplane, and every master delivers
// what the backplane brings to its own processes (dropping its own events,
// by their origin). Event.Host names the host of origin.
func ExampleAllHosts() {
	web1, _ := emitter.New(nil)
	defer web1.Close()
	web2, _ := emitter.New(nil)
	defer web2.Close()
	web1.SetHost("web1")
	web2.SetHost("web2")
	bp := hostsBackplane{web1, web2}
	web1.SetBackplane(bp)
	web2.SetBackplane(bp)

	got := make(chan emitter.Event, 1)
	web2.On("deploy", func(e emitter.Event) { got <- e })
	if err := web1.To(emitter.AllHosts).Emit("deploy", "v2"); err != nil {
		fmt.Println(err)
	}
	e := <-got
	version, _ := emitter.Arg[string](e, 0)
	fmt.Println(e.Name, version, "from", e.Host)
	// Output:
	// deploy v2 from web1
}
