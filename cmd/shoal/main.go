// Command shoal is the single binary of Shoal: the agent (`shoal agent`), the
// CLI that talks to it over its unix socket, and, under the name
// shoal-supervisor, the node's container supervisor (one per node, started by
// the agent; see runtime/supervisor.go).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

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
	code := newShell().run(ctx, os.Args)
	stop()
	os.Exit(code)
}
