package runtime

// The node supervisor lives in runtime/supervisor (see its doc comment),
// a package of the standard library, x/sys and containerinit only, whose
// init runs it when the binary is started as shoal-supervisor — before the
// package initialisers of the agent's big dependencies. These names keep
// the client side (start.go, exit.go) as it was; the client itself is
// runtime/supclient.

import "github.com/shoal-org/shoal/runtime/supervisor"

const exitRecordFile = supervisor.ExitRecordFile

type supRequest = supervisor.Request

// IsSupervisorInvocation reports whether a process started as arg0
// (os.Args[0]) is the node supervisor.
func IsSupervisorInvocation(arg0 string) bool { return supervisor.IsInvocation(arg0) }

// SupervisorMain runs the node supervisor and returns its exit code (see
// supervisor.Main). A binary that imports this package has normally run it
// already, from the supervisor package's init.
func SupervisorMain(argv []string) int { return supervisor.Main(argv) }
