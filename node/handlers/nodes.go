package handlers

// The node routes' display: what `node ls` and `node inspect` show beyond
// the stored record.

import (
	"sort"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// Raft is what the node routes read of this node's Raft
// (*raftnode.Raft).
type Raft interface {
	Leader() (id, addr string)
	State() string
	LastIndex() uint64
	Servers() ([]raftnode.Server, error)
}

// ClusterStatus fills st (this node's identity) with the cluster as r
// shows it: joined, the leader, raft's state and last index, the alive
// gossip members, and the voters sorted (st.Voter when this node is one).
func ClusterStatus(st api.Status, clusterID string, r Raft, members int) api.Status {
	st.Joined = true
	st.ClusterID = clusterID
	st.Leader, st.LeaderAddr = r.Leader()
	st.RaftState = r.State()
	st.LastIndex = r.LastIndex()
	st.Members = members
	if servers, err := r.Servers(); err == nil {
		for _, s := range servers {
			if s.Voter {
				st.Voters = append(st.Voters, s.ID)
				if s.ID == st.NodeID {
					st.Voter = true
				}
			}
		}
	}
	sort.Strings(st.Voters)
	return st
}

// NewRaftView is the RaftView of r, with each member's agent version from
// versionOf (gossip).
func NewRaftView(r Raft, versionOf func(nodeID string) string) RaftView {
	v := RaftView{VersionOf: versionOf, Voters: map[string]bool{}}
	v.Leader, _ = r.Leader()
	if servers, err := r.Servers(); err == nil {
		for _, s := range servers {
			v.Voters[s.ID] = s.Voter
		}
	}
	return v
}

// RaftView is what the node routes show of Raft and gossip: the leader
// this node sees, the voters of the Raft configuration (ID → voter), and
// each member's agent version.
type RaftView struct {
	Leader    string
	Voters    map[string]bool
	VersionOf func(nodeID string) string
	// Alive is gossip's view of who is alive (nil: not known) and Self
	// this node's ID. A voter gossip holds dead is unreachable whatever
	// its stored status says: without a leader nobody records it down,
	// and a cluster that lost its quorum showed its dead voters
	// "reachable" for good.
	Alive map[string]bool
	Self  string
	// Unfit is why each node that cannot persist its state says so
	// (gossip, node/diskhealth), by ID: shown as the node's StatusMessage.
	Unfit map[string]string
}

// DecorateNodes fills ManagerStatus, Voter, AgentVersion and StatusMessage from v, and
// the defaults of records stored before labels and roles existed; sorted
// by hostname.
func DecorateNodes(nodes []*api.Node, v RaftView) []api.Node {
	leader, voters := v.Leader, v.Voters
	out := make([]api.Node, 0, len(nodes))
	for _, n := range nodes {
		nn := *n
		nn.Voter = voters[n.ID]
		nn.AgentVersion = v.VersionOf(n.ID)
		if n.Status == api.NodeReady {
			nn.StatusMessage = v.Unfit[n.ID]
		}
		switch {
		case n.ID == leader && leader != "":
			nn.ManagerStatus = api.ManagerLeader
		case nn.Voter && n.Status == api.NodeReady && (v.Alive == nil || v.Alive[n.ID] || n.ID == v.Self):
			nn.ManagerStatus = api.ManagerReachable
		case nn.Voter:
			nn.ManagerStatus = api.ManagerUnreachable
		default:
			nn.ManagerStatus = ""
		}
		if nn.Labels == nil {
			nn.Labels = map[string]string{}
		}
		if nn.Role == "" {
			nn.Role = api.RoleManager
		}
		out = append(out, nn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].ID < out[j].Hostname+out[j].ID })
	return out
}
