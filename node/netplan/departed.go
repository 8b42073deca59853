package netplan

// A node that leaves the state (`node rm`, `node rm --force` of a live
// node, `shoal leave`) stays on this node's data path for a short while.
//
// Why: the departing node learns of its removal within tens of
// milliseconds and keeps its containers serving for RemovalDrain, so that
// connections already in flight to them end well (node/revocation). Its
// backends leave every load balancer at once (its tasks go desired
// shutdown in the same entry, Traffic), so no new connection goes there.
// But a connection the routing mesh sent to one of them just before the
// removal was applied still needs the path to the node: the overlay's
// route, neighbour and FDB entry, the load balancer's VXLAN filter that
// accepts the node's packets, the mesh return path. Dropping them with the
// record cut those connections halfway: a request that this node's
// balancer sent to the departing node's backend 3 ms before it applied the
// removal hung until its client gave up (TestNodeRmForceLiveNode, 2 of 3
// runs on a loaded machine). So the departed node stays a peer of the
// default network and of the plain networks for DepartedKeep.
//
// Not for encrypted networks: a removed node's WireGuard peer goes at once
// and the keys rotate (netplan's wgrotate.go), as the trust model says.
// The plain overlay carries no authentication, and the departed node could
// send VXLAN to its peers until the moment of removal; DepartedKeep adds
// three seconds to that, the same window in which its own containers still
// run.

import (
	"slices"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
)

// RemovalDrain is how long a node that left or was removed keeps its
// containers after it learns of it, so that the other nodes' balancers
// drop its backends and the connections already in flight finish.
const RemovalDrain = 2 * time.Second

// DepartedKeep is how long the other nodes keep a departed node's data
// path: its drain, plus a second for it to hear of its removal (50–100 ms
// measured) and for its containers' last replies. A network-loop pass
// drops it (passes come at least every resync.Period), so it may stay up
// to one period longer.
const DepartedKeep = RemovalDrain + time.Second

// Departure is a node that left the state, as this node last saw it.
type Departure struct {
	Node *api.Node
	// At is when this node first saw it gone.
	At time.Time
}

// Departures returns the departed nodes to keep at now: those of prev
// younger than keep, and every node of before (the last pass's nodes) that
// after (this pass's) lacks, from now. A departed node is dropped as soon
// as a node of after holds its ID (it joined again), its address or its
// subnet (its place was taken): the current record wins. Self is never
// kept. It is pure.
func Departures(prev map[string]Departure, before, after []*api.Node, self string, now time.Time, keep time.Duration) map[string]Departure {
	ids, addrs, subnets := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range after {
		ids[n.ID] = true
		if n.Addr != "" {
			addrs[n.Addr] = true
		}
		if n.Subnet != "" {
			subnets[n.Subnet] = true
		}
	}
	taken := func(n *api.Node) bool {
		return n.ID == self || ids[n.ID] || addrs[n.Addr] || subnets[n.Subnet]
	}
	out := map[string]Departure{}
	for id, d := range prev {
		if now.Sub(d.At) < keep && !taken(d.Node) {
			out[id] = d
		}
	}
	for _, n := range before {
		if _, kept := out[n.ID]; kept || taken(n) || keep <= 0 {
			continue
		}
		out[n.ID] = Departure{Node: n, At: now}
	}
	return out
}

// DepartedNodes lists the records of deps by ID, for State.Departed.
func DepartedNodes(deps map[string]Departure) []*api.Node {
	if len(deps) == 0 {
		return nil
	}
	out := make([]*api.Node, 0, len(deps))
	for _, d := range deps {
		out = append(out, d.Node)
	}
	slices.SortFunc(out, func(a, b *api.Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}
