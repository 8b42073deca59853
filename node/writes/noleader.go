package writes

import (
	"fmt"

	"github.com/shoal-org/shoal/consensus/raftnode"
)

// Failing fast without a leader.
//
// A write that finds no leader retries until the write timeout (10 s), which
// is right while an election is under way: a leader killed is replaced
// within a second or two, and the write then goes through. But when too few
// voters are left to elect anyone (two of three gone), the wait buys
// nothing: the CLI user waited 10 s for "no quorum". Swarm answers at once
// ("The swarm does not have a leader"). So a write that finds no leader
// asks whether an election could succeed at all, from one snapshot of the
// raft configuration and gossip's view, and when it cannot, fails at once
// and says what to do.
//
// A voter counts as reachable when gossip has it alive, and as possibly
// reachable when gossip has never seen it since this agent started (a node
// just restarted has not met its peers yet): only voters gossip saw and
// then declared dead count against the quorum. Gossip declares a node dead
// after its probes and suspicion (about a second or two); until then the
// write waits as before, and the election, if one can succeed, comes first.

// electionHopeless reports whether no election can succeed: fewer voters
// of servers are alive (alive, or self) or unseen since start (unseen) than
// a majority. reach and voters are for the error message. No voter at all
// (a configuration not read yet) is never hopeless.
func electionHopeless(servers []raftnode.Server, self string, alive func(id string) bool, unseen func(id string) bool) (hopeless bool, reach, voters int) {
	maybe := 0
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		switch {
		case s.ID == self || alive(s.ID):
			reach++
		case unseen(s.ID):
			maybe++
		}
	}
	return voters > 0 && reach+maybe < voters/2+1, reach, voters
}

// noLeaderError is the answer of a write (Write, Forward, SyncReplica)
// that finds no leader when electionHopeless: ErrNoQuorum,
// with the count and the way out. sent says an earlier attempt of the same
// call reached a leader that was lost before it answered: that leader may
// have committed it on a majority, which applies it once a leader is back,
// so the answer must not say it was not applied (as SettleRetry never
// refuses a write that took effect).
func noLeaderError(reach, voters int, sent bool) error {
	outcome := "the write was not applied"
	if sent {
		outcome = "the write may or may not have been applied (an earlier attempt reached a leader that was lost before it answered)"
	}
	return fmt.Errorf("%w: %s: the cluster has no leader and cannot elect one: "+
		"%d of %d voters reachable from this node, %d needed. Bring the other voters back online (or this node's network to them); "+
		"if a majority is lost for good, run `shoal agent --force-new-cluster` on a surviving voter (README: Recovery, a majority of voters lost)",
		ErrNoQuorum, outcome, reach, voters, voters/2+1)
}

// noLeader answers a write that found no leader: noLeaderError when
// electionHopeless says so over this node's raft configuration and gossip,
// nil (keep waiting) otherwise or when either is not at hand. sent is as
// for noLeaderError.
func (w *Writer) noLeader(sent bool) error {
	cl := w.cfg
	if cl.Members == nil {
		return nil
	}
	servers, err := cl.Raft.Servers()
	if err != nil {
		return nil
	}
	alive := cl.Members.AliveSet()
	hopeless, reach, voters := electionHopeless(servers, cl.NodeID,
		func(id string) bool { _, ok := alive[id]; return ok },
		func(id string) bool { return !cl.Members.EverSeen(id) })
	if !hopeless {
		return nil
	}
	return noLeaderError(reach, voters, sent)
}
