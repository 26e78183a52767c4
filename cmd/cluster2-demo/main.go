// Command cluster2-demo runs a cluster2 demo cluster on embedded defaults.
//
// The master/worker runtime lands with its own issue; until then the demo only
// says so.
package main

import "fmt"

func main() {
	fmt.Println("cluster2-demo: not yet: the master/worker runtime is not built yet (see README.md)")
}
