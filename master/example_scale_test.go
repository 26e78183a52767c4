package master_test

import (
	"fmt"

	"github.com/cluster2/cluster2/master"
)

// ExampleConfig_Validate_maxWorkers shows that the ceiling of Scale cannot be
// below the workers a cluster starts with.
func ExampleConfig_Validate_maxWorkers() {
	fmt.Println(master.Config{Workers: 4, MaxWorkers: 2}.Validate())
	// Output: master: invalid configuration: MaxWorkers 2 is below Workers (4)
}
