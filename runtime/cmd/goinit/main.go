// Command goinit is the old Go container init (runtime/containerinit) on
// its own. Nothing in production runs it any more (containers run under the
// C shoal-init of runtime/init and the node supervisor); the runtime's tests
// build it, static with CGO_ENABLED=0, as the baseline of
// BenchmarkContainerOverhead.
package main

import (
	"os"

	"github.com/shoal-org/shoal/runtime/containerinit"
)

func main() {
	os.Exit(containerinit.Main(os.Args))
}
