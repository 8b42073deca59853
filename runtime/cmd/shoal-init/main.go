// Command shoal-init is the container init on its own, for tests and for
// installations that prefer a separate static binary to bind-mounting the
// shoal binary. Build it with CGO_ENABLED=0.
package main

import (
	"os"

	"github.com/shoal-org/shoal/runtime/containerinit"
)

func main() {
	os.Exit(containerinit.Main(os.Args))
}
