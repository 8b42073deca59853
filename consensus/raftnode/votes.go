package raftnode

import (
	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus/heartbeat"
)

// voteTransport sends raft's vote and pre-vote requests so that a voter
// whose configuration is behind the candidate's can still grant them.
//
// Why: hashicorp/raft v1.8.0 refuses a vote or a pre-vote when its own
// latest configuration lists the candidate as a non-voter (or not at all),
// judged by the request's ID field (requestVote, requestPreVote; raft PR
// #526). A promotion commits with the leader and a majority of the new
// configuration, so it can commit before every old voter has it: with
// voters n1 (leader) and n2, promoting n3 commits on n1 and n3. Should n1
// then die before n2 hears of it, n3 (the promotion in its log, a voter
// to itself) is refused by n2 as a non-voter, and n2 is refused by n3,
// whose log is longer: no leader ever, until n1 comes back. Seen as a CI
// flake (TestRaftThinnedPartitionedLeaderStepsDown: the leader isolated
// right after n3's promotion committed, two survivors, no leader in 10 s).
//
// Raft itself has no such rule: a server votes on terms and log recency
// alone, whatever its configuration says (Ongaro's thesis, 4.1), and the
// candidate counts the votes by its own configuration, which is what makes
// single-server changes safe. So:
//
//   - a vote request goes without the ID: raft skips both checks for a
//     request without one (as from raft before protocol 3) and decides on
//     term, known leader and log, recording the vote against the address;
//   - a pre-vote request needs an ID that its configuration lists as a
//     voter. It goes as raft made it (the candidate's own ID) and, when
//     refused, once more naming the voter it goes to. A pre-vote changes
//     nothing on the voter, so asking twice is harmless; the second ask
//     passes the ID checks whenever the voter votes by its own
//     configuration, and is then refused only on term, leader or log.
//     (Naming the voter in the first ask would fail a voter that does not
//     list itself as one — demoted, or behind — where the candidate's ID
//     passes.)
//
// No receiving node needs to change (a rolling upgrade gets it from the
// first upgraded candidate).
//
// What it does not open: a node speaks raft first only when node's
// authorization lets it in (node/authz RaftPeerAllowed: voters only, unless
// the follower has had no leader for RaftLostAfter), which names the peer
// by its certificate, not by this field; and a candidate still needs a
// quorum of its own configuration and a log at least as recent as each
// voter's.
type voteTransport struct {
	*heartbeat.Transport
}

// RequestVote sends args without the requester's ID (see voteTransport).
// raft shares args among its concurrent requests: each call sends a copy.
func (t voteTransport) RequestVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	a := *args
	a.ID = nil
	return t.Transport.RequestVote(id, target, &a, resp)
}

// RequestPreVote asks as raft made args and, when refused, once more
// naming the voter id as the requester (see voteTransport).
func (t voteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := t.Transport.RequestPreVote(id, target, args, resp); err != nil || resp.Granted || string(args.ID) == string(id) {
		return err
	}
	a := *args
	a.ID = []byte(id)
	var again raft.RequestPreVoteResponse
	if err := t.Transport.RequestPreVote(id, target, &a, &again); err != nil {
		return nil // the first answer stands
	}
	*resp = again
	return nil
}
