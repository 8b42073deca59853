package main

import (
	"github.com/shoal-org/shoal/runtime"
)

// isSupervisorInvocation reports whether the binary was started as the
// node's container supervisor: the runtime re-executes this binary under the
// name shoal-supervisor, once per node.
func isSupervisorInvocation(argv0 string) bool {
	return runtime.IsSupervisorInvocation(argv0)
}

// runSupervisor runs the node supervisor and returns its exit code.
func runSupervisor(args []string) int {
	return runtime.SupervisorMain(args)
}
