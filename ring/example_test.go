package ring_test

import (
	"context"
	"fmt"

	"github.com/cluster2/cluster2/ring"
	"github.com/cluster2/cluster2/shm"
)

// Example lays a ring out in a named region, writes two records and reads
// them back. In a cluster the producer and the consumer are two processes:
// the other one calls Region (without init) and Attach.
func Example() {
	a, err := shm.Create(shm.Options{Size: 1 << 20, Slots: 4, Name: "example"})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	ctx := context.Background()
	off, _, err := a.Region(ctx, "events", ring.Size(4096), func(off shm.Off) error {
		_, err := ring.Init(a, off, 4096)
		return err
	})
	if err != nil {
		panic(err)
	}
	r, err := ring.Attach(a, off)
	if err != nil {
		panic(err)
	}
	p, _ := a.Self()
	pr, _ := r.Producer(ctx, p, nil)
	c, _ := r.Consumer(p, nil)

	pr.Write(ctx, 1, []byte("hello"))
	buf, _ := pr.Claim(ctx, 2, 5) // zero-copy: fill the ring's bytes, then commit
	copy(buf, "world")
	pr.Commit()

	c.Read(ctx, func(typ uint32, payload []byte) {
		fmt.Printf("%d %s\n", typ, payload) // payload is valid only during the call
	}, 10)
	// Output:
	// 1 hello
	// 2 world
}
