package leaderloop

import (
	"context"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// VoterRecords returns the SetNodeVoter commands that make each stored
// node's Voter flag say what the Raft configuration says (a node missing
// from it does not vote); nil when they already agree. Pure.
//
// Why: autopilot changes the Raft configuration, not the state, and the
// flag stayed what init or join wrote (true on the first node, false on
// every other) for good. The API hides it by reading the configuration
// (handlers.DecorateNodes), but the scheduler's `node.role==manager`
// constraint matched only the first node, whatever voted, and the
// `promoted`/`demoted` node events never came.
func VoterRecords(nodes []*api.Node, servers []raftnode.Server) []command.Command {
	voter := make(map[string]bool, len(servers))
	for _, s := range servers {
		voter[s.ID] = s.Voter
	}
	var out []command.Command
	for _, n := range nodes {
		if want := voter[n.ID]; n.Voter != want {
			out = append(out, command.SetNodeVoter{ID: n.ID, Voter: want})
		}
	}
	return out
}

// recordVoters writes VoterRecords of the replica and the current Raft
// configuration in one entry; the next pass retries a failure.
func (l *Loop) recordVoters(ctx context.Context) {
	cl := l.cfg
	servers, err := cl.Raft.Servers()
	if err != nil {
		return
	}
	cmds := VoterRecords(cl.Store.Nodes(), servers)
	if len(cmds) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.Raft.Apply(wctx, &command.Batch{Commands: cmds}); err != nil {
		l.log.Warn("record voters", "err", err)
	}
}
