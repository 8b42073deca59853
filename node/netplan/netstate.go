// Package netplan decides what this node's data plane should be, from one
// snapshot of the replica: the default overlay's peers, the overlays and
// WireGuard peers of the other networks, the load balancer's state and the
// DNS views, and the next step of this node's WireGuard key rotation.
//
// Everything here is pure: (State, alive set, self, keys) → desired host
// state. The network loop (node/netloop, with its key files in
// wgkeys.go) reads one State per pass, asks this package what the host
// should look like, and applies the answer through overlay, lb and
// the WireGuard device. Kept apart so the decisions are table-tested
// without a device, a netns or an *Agent, and so nothing here can reach
// the host by accident.
package netplan

// One consistent read per pass of the network loop. The overlay peers, the
// overlays of the other networks and the load balancer are all derived from
// the state; reading it table by table would let an entry applied between
// two reads show a pass a state no log prefix ever had — a running task of
// a service the pass did not see (a backend silently missing until the next
// change), or a node's subnet without the node. So each pass reads one
// Store.Snapshot() into a State, and the functions that turn it into
// desired host state (OverlayPeers, Traffic) are pure: (State, alive set,
// self) → desired state, table-tested like the reconciler's actions.

import (
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// State is what one pass of the network loop reads: one point-in-time
// view of the replica. Its slices and records are the pass's own copies.
type State struct {
	// Index is a Raft index the view includes everything up to: once the
	// view is programmed, the load balancer has synced through Index. It
	// may be older than the view (never newer), which only makes the
	// reconciler's drain wait err on the safe side.
	Index    uint64
	Cluster  *consensus.ClusterState // nil before bootstrap
	Nodes    []*api.Node             // ordered by ID
	Networks []*api.Network
	Services []*api.Service // ordered by ID
	// Tasks are the tasks of each service, by service ID, ordered by ID.
	Tasks map[string][]*api.Task
	// Departed are nodes that left the state moments ago, kept on the
	// data path while they drain (departed.go), ordered by ID. Read leaves
	// it empty: the network loop, which remembers the last pass, fills it.
	Departed []*api.Node
}

// Read reads the state one network-loop pass needs from one snapshot of
// store. It never blocks on the FSM.
func Read(store *consensus.Store) State {
	// The FSM stores an entry's data before it publishes its index, so an
	// index read before the snapshot never claims more than the snapshot
	// holds (Snapshot's own Index, read after its data, may).
	idx := store.Index()
	snap := store.Snapshot()
	st := State{
		Index:    idx,
		Cluster:  snap.Cluster(),
		Nodes:    snap.Nodes(),
		Networks: snap.Networks(),
		Services: snap.Services(),
		Tasks:    map[string][]*api.Task{},
	}
	for _, t := range snap.Tasks() {
		st.Tasks[t.ServiceID] = append(st.Tasks[t.ServiceID], t)
	}
	return st
}

// Node returns the node with this ID in the view, or nil.
func (st State) Node(id string) *api.Node {
	for _, n := range st.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// DataPathNodes are the nodes this node's overlays reach: the view's
// nodes, then the departed ones (departed.go). Not WireGuard's peers: a
// departed node's goes at once.
func (st State) DataPathNodes() []*api.Node {
	if len(st.Departed) == 0 {
		return st.Nodes
	}
	return append(slices.Clip(st.Nodes), st.Departed...)
}
