package placement

import (
	"fmt"
	"strings"
)

// LevelNeed is the protocol level a task's spec needs of the agent that
// runs it, and the spec fields that need it (servicespec.MinLevel): an
// agent below it would drop those fields and run the task less restricted
// than its spec. The zero value needs nothing.
type LevelNeed struct {
	Level  int
	Fields []string
}

// baseLevel is the level of a node that advertises none (command
// BaseProtocolLevel; this package imports only api).
const baseLevel = 1

// LevelFilter refuses nodes whose agent advertises a protocol level below
// what the request's spec needs (a node of unknown level counts as the
// base level). The task stays pending with the reason, e.g. "no suitable
// node (1 node on an older Shoal (the spec's read_only needs protocol
// level 3))", until such a node is upgraded. Tasks already on the node
// are not touched: they were placed when it could run them.
type LevelFilter struct{}

// Check implements Filter.
func (LevelFilter) Check(n *NodeInfo, r *Request) (bool, string) {
	if r.Level.Level <= baseLevel || max(n.Level, baseLevel) >= r.Level.Level {
		return true, ""
	}
	what := "spec"
	if len(r.Level.Fields) > 0 {
		what = "spec's " + strings.Join(r.Level.Fields, ", ")
	}
	return false, fmt.Sprintf("on an older Shoal (the %s needs protocol level %d)", what, r.Level.Level)
}
