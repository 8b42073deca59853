package leaderloop

import (
	"reflect"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// TestVoterRecords: the stored Voter of each node follows the raft
// configuration (it was written at bootstrap only, so autopilot's changes
// never reached the promoted/demoted events).
func TestVoterRecords(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	node := func(id string, voter bool) *api.Node { return &api.Node{ID: id, Voter: voter} }
	srv := func(id string, voter bool) raftnode.Server {
		return raftnode.Server{ID: id, Addr: id + ":2377", Voter: voter}
	}
	rec := func(id string, voter bool) command.SetNodeVoter {
		return command.SetNodeVoter{ID: id, Voter: voter, Now: now}
	}
	cases := []struct {
		name    string
		servers []raftnode.Server
		nodes   []*api.Node
		want    []command.SetNodeVoter
	}{
		{"in step", []raftnode.Server{srv("a", true), srv("b", false)}, []*api.Node{node("a", true), node("b", false)}, nil},
		{"promoted", []raftnode.Server{srv("a", true), srv("b", true), srv("c", true)},
			[]*api.Node{node("a", true), node("b", false), node("c", false)}, []command.SetNodeVoter{rec("b", true), rec("c", true)}},
		{"demoted", []raftnode.Server{srv("a", true), srv("b", false)}, []*api.Node{node("a", true), node("b", true)},
			[]command.SetNodeVoter{rec("b", false)}},
		{"removed from raft", []raftnode.Server{srv("a", true)}, []*api.Node{node("a", true), node("b", true)},
			[]command.SetNodeVoter{rec("b", false)}},
		{"joining, not in raft yet", []raftnode.Server{srv("a", true)}, []*api.Node{node("a", true), node("b", false)}, nil},
		{"a server with no node record", []raftnode.Server{srv("a", true), srv("x", true)}, []*api.Node{node("a", true)}, nil},
	}
	for _, tc := range cases {
		if got := VoterRecords(tc.servers, tc.nodes, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
