package leaderloop

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// TestVoterRecords: the stored Voter flag follows the Raft configuration
// (autopilot's promotions and demotions), and only what differs is written.
func TestVoterRecords(t *testing.T) {
	node := func(id string, voter bool) *api.Node { return &api.Node{ID: id, Voter: voter} }
	srv := func(id string, voter bool) raftnode.Server { return raftnode.Server{ID: id, Voter: voter} }
	cases := []struct {
		name    string
		nodes   []*api.Node
		servers []raftnode.Server
		want    []command.Command
	}{
		{"agree", []*api.Node{node("a", true), node("b", false)},
			[]raftnode.Server{srv("a", true), srv("b", false)}, nil},
		{"joined nodes promoted by autopilot", []*api.Node{node("a", true), node("b", false), node("c", false)},
			[]raftnode.Server{srv("a", true), srv("b", true), srv("c", true)},
			[]command.Command{command.SetNodeVoter{ID: "b", Voter: true}, command.SetNodeVoter{ID: "c", Voter: true}}},
		{"first node demoted", []*api.Node{node("a", true), node("b", true)},
			[]raftnode.Server{srv("a", false), srv("b", true)},
			[]command.Command{command.SetNodeVoter{ID: "a", Voter: false}}},
		{"removed from the configuration", []*api.Node{node("a", true), node("dead", true)},
			[]raftnode.Server{srv("a", true)},
			[]command.Command{command.SetNodeVoter{ID: "dead", Voter: false}}},
		{"server without a node record", []*api.Node{node("a", true)},
			[]raftnode.Server{srv("a", true), srv("ghost", true)}, nil},
	}
	for _, c := range cases {
		if got := VoterRecords(c.nodes, c.servers); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: VoterRecords = %v, want %v", c.name, got, c.want)
		}
	}
}
