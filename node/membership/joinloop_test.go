package membership

import (
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestJoinOrder: ready nodes first, then the given peers, then the rest;
// never self, never twice; each group shuffled by the caller's shuffle.
func TestJoinOrder(t *testing.T) {
	node := func(id, addr, status string) *api.Node {
		return &api.Node{ID: id, Addr: addr, GossipPort: 7946, Status: status}
	}
	nodes := []*api.Node{
		node("self", "10.0.0.1", api.NodeReady),
		node("a", "10.0.0.2", api.NodeReady),
		node("b", "10.0.0.3", api.NodeDown),
		node("c", "10.0.0.4", api.NodeReady),
		{ID: "noaddr", Status: api.NodeReady},
		node("d", "10.0.0.5", ""),
	}
	reverse := func(a []string) { slices.Reverse(a) }
	keep := func([]string) {}
	cases := []struct {
		name    string
		peers   []string
		shuffle func([]string)
		want    []string
	}{
		{"ready, peers, rest", []string{"10.9.9.9:7946"}, keep,
			[]string{"10.0.0.2:7946", "10.0.0.4:7946", "10.9.9.9:7946", "10.0.0.3:7946", "10.0.0.5:7946"}},
		{"each group shuffled", []string{"10.9.9.9:7946", "10.9.9.8:7946"}, reverse,
			[]string{"10.0.0.4:7946", "10.0.0.2:7946", "10.9.9.8:7946", "10.9.9.9:7946", "10.0.0.5:7946", "10.0.0.3:7946"}},
		{"a peer that is a ready node counts once, self's address never", []string{"10.0.0.2:7946", "10.0.0.1:7946"}, keep,
			[]string{"10.0.0.2:7946", "10.0.0.4:7946", "10.0.0.3:7946", "10.0.0.5:7946"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := JoinOrder(tc.peers, nodes, "self", "10.0.0.1:7946", tc.shuffle)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
