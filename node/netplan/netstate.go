package node

// One consistent read per pass of the network loop. The overlay peers, the
// overlays of the other networks and the load balancer are all derived from
// the state; reading it table by table would let an entry applied between
// two reads show a pass a state no log prefix ever had — a running task of
// a service the pass did not see (a backend silently missing until the next
// change), or a node's subnet without the node. So each pass reads one
// Store.Snapshot() into a netState, and the functions that turn it into
// desired host state (overlayPeers, trafficState) are pure: (netState,
// alive set, self) → desired state, table-tested like computeActions.

import (
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// netState is what one pass of the network loop reads: one point-in-time
// view of the replica. Its slices and records are the pass's own copies.
type netState struct {
	// Index is a Raft index the view includes everything up to: once the
	// view is programmed, the load balancer has synced through Index. It
	// may be older than the view (never newer), which only makes the
	// reconciler's drain wait (drainStops) err on the safe side.
	Index    uint64
	Cluster  *consensus.ClusterState // nil before bootstrap
	Nodes    []*api.Node             // ordered by ID
	Networks []*api.Network
	Services []*api.Service // ordered by ID
	// Tasks are the tasks of each service, by service ID, ordered by ID.
	Tasks map[string][]*api.Task
}

// readNetState reads the state one network-loop pass needs from one
// snapshot of store. It never blocks on the FSM.
func readNetState(store *consensus.Store) netState {
	// The FSM stores an entry's data before it publishes its index, so an
	// index read before the snapshot never claims more than the snapshot
	// holds (Snapshot's own Index, read after its data, may).
	idx := store.Index()
	snap := store.Snapshot()
	st := netState{
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

// node returns the node with this ID in the view, or nil.
func (st netState) node(id string) *api.Node {
	for _, n := range st.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}
