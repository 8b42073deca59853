package handlers

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestDecorateNodes(t *testing.T) {
	nodes := []*api.Node{
		{ID: "n3", Hostname: "c", Status: api.NodeReady},
		{ID: "n1", Hostname: "a", Status: api.NodeReady, Role: api.RoleWorker, Labels: map[string]string{"k": "v"}},
		{ID: "n2", Hostname: "b", Status: api.NodeDown},
		{ID: "n4", Hostname: "b", Status: api.NodeReady},
	}
	v := RaftView{
		Leader:    "n3",
		Voters:    map[string]bool{"n1": true, "n2": true, "n3": true, "n4": false},
		VersionOf: func(id string) string { return "v-" + id },
	}
	got := DecorateNodes(nodes, v)
	want := []struct{ id, status, role string }{
		{"n1", api.ManagerReachable, api.RoleWorker},
		{"n2", api.ManagerUnreachable, api.RoleManager},
		{"n4", "", api.RoleManager},
		{"n3", api.ManagerLeader, api.RoleManager},
	}
	if len(got) != len(want) {
		t.Fatalf("%d nodes, want %d", len(got), len(want))
	}
	for i, w := range want {
		n := got[i]
		if n.ID != w.id || n.ManagerStatus != w.status || n.Role != w.role {
			t.Errorf("node %d: %s %q %q, want %s %q %q", i, n.ID, n.ManagerStatus, n.Role, w.id, w.status, w.role)
		}
		if n.AgentVersion != "v-"+n.ID || n.Labels == nil || n.Voter != v.Voters[n.ID] {
			t.Errorf("node %s: version %q, labels %v, voter %v", n.ID, n.AgentVersion, n.Labels, n.Voter)
		}
	}
	if nodes[0].ManagerStatus != "" || nodes[0].Labels != nil {
		t.Error("the stored records were changed")
	}
	// Gossip holds a voter dead that the store still records ready (no
	// leader left to mark it down): unreachable. This node counts alive.
	v.Leader, v.Self, v.Alive = "", "n1", map[string]bool{"n4": true}
	for _, n := range DecorateNodes(nodes, v) {
		want := map[string]string{"n1": api.ManagerReachable, "n2": api.ManagerUnreachable, "n3": api.ManagerUnreachable, "n4": ""}[n.ID]
		if n.ManagerStatus != want {
			t.Errorf("quorum lost, gossip holds n3 dead: %s shows %q, want %q", n.ID, n.ManagerStatus, want)
		}
	}
	// Gossip says n4 and n2 cannot persist: the ready n4 shows why, the
	// down n2 does not (down says enough).
	v.Unfit = map[string]string{"n4": "disk full: raft log writes fail", "n2": "disk full: x"}
	for _, n := range DecorateNodes(nodes, v) {
		want := map[string]string{"n4": "disk full: raft log writes fail"}[n.ID]
		if n.StatusMessage != want {
			t.Errorf("unfit: %s status message %q, want %q", n.ID, n.StatusMessage, want)
		}
	}
	// No leader known: nobody is shown as leader.
	if got := DecorateNodes([]*api.Node{{ID: "n1"}}, RaftView{VersionOf: func(string) string { return "" }}); got[0].ManagerStatus != "" {
		t.Errorf("no leader: %q", got[0].ManagerStatus)
	}
}
