package node

import "github.com/shoal-org/shoal/runtime"

// The node's container supervisor is the shoal binary re-executed under the
// name shoal-supervisor (runtime/supervisor.go). main picks it by argv[0]
// before the CLI parses anything; these two hooks keep cmd/shoal talking to
// node only, as DESIGN.md's import rules say.

// IsSupervisorInvocation reports whether the binary was started as the
// node's container supervisor.
func IsSupervisorInvocation(argv0 string) bool { return runtime.IsSupervisorInvocation(argv0) }

// SupervisorMain runs the node supervisor and returns its exit code.
func SupervisorMain(args []string) int { return runtime.SupervisorMain(args) }
