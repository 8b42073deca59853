// Command shoal is the binary of Shoal: the agent (`shoal agent`) and the
// CLI that talks to it over its unix socket. Under the name
// shoal-supervisor it is also the node's container supervisor when the
// smaller runtime/cmd/shoal-supervisor is not installed beside it (one per
// node, started by the agent; see runtime/README.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/node"
)

func init() {
	// --version only: -v is too easily meant as "verbose" in a subcommand.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit", DisableDefaultText: true}
}

func main() {
	if node.IsSupervisorInvocation(os.Args[0]) {
		os.Exit(node.SupervisorMain(os.Args))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, shell.New(), os.Args)
	stop()
	os.Exit(code)
}
