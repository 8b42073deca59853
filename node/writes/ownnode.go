package writes

import (
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
)

// ownWireGuardKeys refuses a node's report about itself that publishes a
// WireGuard key another node's record holds (authz.WireGuardKeyTaken).
func (w *Writer) ownWireGuardKeys(id string, cmd command.Command) error {
	var problem string
	eachCommand(cmd, func(c command.Command) command.Command {
		n, _, ok := nodeReport(c)
		if ok && n.ID == id && problem == "" {
			problem = authz.WireGuardKeyTaken(w.cfg.Store.Nodes(), n)
		}
		return c
	})
	if problem != "" {
		return fmt.Errorf("%w: node %s: %s", authz.ErrForbidden, api.ShortID(id), problem)
	}
	return nil
}

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
		n, whole, ok := nodeReport(c)
		if !ok || !whole || n.ID != id {
			return c
		}
		changed = true
		return command.UpdateOwnNode{Node: n}
	})
	return out, changed
}

// nodeReport returns the node record c carries when c is an UpsertNode
// (whole: the whole record) or an UpdateOwnNode, value or pointer.
func nodeReport(c command.Command) (n api.Node, whole, ok bool) {
	switch x := c.(type) {
	case command.UpsertNode:
		return x.Node, true, true
	case *command.UpsertNode:
		return x.Node, true, true
	case command.UpdateOwnNode:
		return x.Node, false, true
	case *command.UpdateOwnNode:
		return x.Node, false, true
	}
	return api.Node{}, false, false
}
