package handlers

// The node routes' display: what `node ls` and `node inspect` show beyond
// the stored record.

import (
	"sort"

	"github.com/shoal-org/shoal/api"
)

// RaftView is what the node routes show of Raft and gossip: the leader
// this node sees, the voters of the Raft configuration (ID → voter), and
// each member's agent version.
type RaftView struct {
	Leader    string
	Voters    map[string]bool
	VersionOf func(nodeID string) string
}

// DecorateNodes fills ManagerStatus, Voter and AgentVersion from v, and
// the defaults of records stored before labels and roles existed; sorted
// by hostname.
func DecorateNodes(nodes []*api.Node, v RaftView) []api.Node {
	leader, voters := v.Leader, v.Voters
	out := make([]api.Node, 0, len(nodes))
	for _, n := range nodes {
		nn := *n
		nn.Voter = voters[n.ID]
		nn.AgentVersion = v.VersionOf(n.ID)
		switch {
		case n.ID == leader && leader != "":
			nn.ManagerStatus = api.ManagerLeader
		case nn.Voter && n.Status == api.NodeReady:
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
