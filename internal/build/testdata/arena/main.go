// Command arena is the layout bump's test helper (internal/build's
// TestLayoutBumpRefusedBothWays builds it with and without the bump):
//
//	arena open     opens the arena inherited as fd 3, prints "ok" or the error
//	arena create   creates an arena, prints "version <v> fd <n>", and keeps it
//	               until stdin closes (the test opens /proc/<pid>/fd/<n>)
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/cluster2/cluster2/shm"
)

func main() {
	switch os.Args[1] {
	case "open":
		a, err := shm.Open(os.NewFile(3, "arena"))
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		a.Close()
		fmt.Println("ok")
	case "create":
		a, err := shm.Create(shm.Options{Size: 1 << 20})
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		fmt.Printf("version %d fd %d\n", shm.Version(), a.File().Fd())
		bufio.NewReader(os.Stdin).ReadString('\n') // until the test is done
		a.Close()
	}
}
