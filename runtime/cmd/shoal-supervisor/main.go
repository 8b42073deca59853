// Command shoal-supervisor is the node supervisor (runtime/supervisor) on
// its own.
package main

import (
	"os"

	"github.com/shoal-org/shoal/runtime/supervisor"
)

func main() {
	os.Exit(supervisor.Main(os.Args))
}
