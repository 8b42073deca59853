package test

import (
	"fmt"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestClusterForms: three nodes, every node sees three ready nodes, one
// leader and two reachable voters, and the same cluster ID.
func TestClusterForms(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	ids := nodeIDs(t, c.Hosts()...)
	var clusterID string
	harness.Eventually(t, formTimeout, func() (bool, string) {
		for _, h := range c.Hosts() {
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			m := countManager(nodes)
			if len(nodes) != 3 || m[api.ManagerLeader] != 1 || m[api.ManagerReachable] != 2 {
				return false, fmt.Sprintf("%s sees %s", h.Name, harness.Summary(nodes))
			}
			byID := nodesBy(nodes)
			for i, id := range ids {
				n, ok := byID[id]
				if !ok || n.Status != api.NodeReady || !n.Voter || n.Addr != c.Host(i+1).IP {
					return false, fmt.Sprintf("%s sees node %s as %+v", h.Name, id, n)
				}
			}
		}
		return true, ""
	}, "3 ready voters, one leader, on every node")
	for _, h := range c.Hosts() {
		st, err := h.Status()
		if err != nil {
			t.Fatal(err)
		}
		if clusterID == "" {
			clusterID = st.ClusterID
		}
		if st.ClusterID == "" || st.ClusterID != clusterID || !st.Joined || len(st.Voters) != 3 {
			t.Errorf("%s status %+v, want cluster %s, joined, 3 voters", h.Name, st, clusterID)
		}
	}
}
