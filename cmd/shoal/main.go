// Command shoal is the single binary of Shoal: the agent (`shoal agent`), the
// CLI that talks to it over its unix socket, and, under the name
// shoal-init, the small init that runs inside containers.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if isInitInvocation(os.Args[0]) {
		os.Exit(runInit(os.Args))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := newShell().run(ctx, os.Args)
	stop()
	os.Exit(code)
}
