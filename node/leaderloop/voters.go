package leaderloop

import (
	"context"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// VoterRecords returns the writes that make each stored node's Voter match
// servers, the raft configuration: voter when it is a voter there, not
// when it is a non-voter or absent (removed). Node.Voter used to be
// written at bootstrap only, so the promoted and demoted events
// node/events derives from it never fired for autopilot's changes; the
// raft configuration is the truth (handlers.DecorateNodes shows it), and
// this records it where the events can see it. Pure; sorted by node ID as
// nodes are.
func VoterRecords(servers []raftnode.Server, nodes []*api.Node, now time.Time) []command.SetNodeVoter {
	voter := make(map[string]bool, len(servers))
	for _, s := range servers {
		voter[s.ID] = s.Voter
	}
	var out []command.SetNodeVoter
	for _, n := range nodes {
		if want := voter[n.ID]; n.Voter != want {
			out = append(out, command.SetNodeVoter{ID: n.ID, Voter: want, Now: now})
		}
	}
	return out
}

// recordVoters writes VoterRecords of servers, the current raft configuration
// (autopilot's own read, read again after it changed the voters), one
// entry per node whose role changed (rare: autopilot changes one voter at
// a time). It runs on every pass, so a change made by an earlier leader, or
// one whose record failed, is recorded by the next pass.
func (l *Loop) recordVoters(ctx context.Context, servers []raftnode.Server) {
	cl := l.cfg
	for _, c := range VoterRecords(servers, cl.Store.Nodes(), time.Now().UTC()) {
		if cl.Removing != nil && cl.Removing(c.ID) {
			continue // its record goes with the node
		}
		if cl.Raft.CheckCommand(&c) != nil {
			// A member too old to store the time (VoterTimeLevel): the
			// same record without it, so every replica stores the same.
			c.Now = time.Time{}
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cl.Raft.Apply(wctx, &c)
		cancel()
		if err != nil {
			l.log.Warn("record voter", "node_id", api.ShortID(c.ID), "voter", c.Voter, "err", err)
			return
		}
	}
}
