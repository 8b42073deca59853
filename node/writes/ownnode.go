package writes

import (
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// ownNodeReports returns cmd with every UpsertNode node id proposes about
// its own record turned into an UpdateOwnNode, and whether it changed any.
// The node's UpsertNode carries its whole record, copied from its replica:
// authz checked that it changes only fields the node owns against the
// leader's replica, but an admin's update (a drain, a role) or a removal
// may commit between that check and the entry's apply, and the whole
// record would then undo it, or bring the removed node back.
// UpdateOwnNode applies only the owned fields, onto the record as it is
// then, and refuses a node that has none.
func ownNodeReports(id string, cmd command.Command) (command.Command, bool) {
	changed := false
	out := eachCommand(cmd, func(c command.Command) command.Command {
		var n command.UpsertNode
		switch x := c.(type) {
		case command.UpsertNode:
			n = x
		case *command.UpsertNode:
			n = *x
		default:
			return c
		}
		if n.Node.ID != id {
			return c
		}
		changed = true
		return command.UpdateOwnNode{Node: n.Node}
	})
	return out, changed
}
