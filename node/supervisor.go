package node

import "github.com/shoal-org/shoal/runtime"

// The node's container supervisor is runtime/cmd/shoal-supervisor when it
// is installed beside the agent (or in /usr/lib/shoal); otherwise the shoal
// binary re-executed under the name shoal-supervisor, which main picks by
// argv[0] before the CLI parses anything. These two hooks keep cmd/shoal
// talking to node only, as DESIGN.md's import rules say.

// IsSupervisorInvocation reports whether the binary was started as the
// node's container supervisor.
func IsSupervisorInvocation(argv0 string) bool { return runtime.IsSupervisorInvocation(argv0) }

// SupervisorMain runs the node supervisor and returns its exit code.
func SupervisorMain(args []string) int { return runtime.SupervisorMain(args) }
