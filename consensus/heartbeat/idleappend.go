package heartbeat

import (
	"time"

	"github.com/hashicorp/raft"
)

// Idle appends to non-voters are answered on the leader.
//
// Why: besides heartbeats, hashicorp/raft v1.8.0 sends each follower an
// AppendEntries every CommitTimeout–2×CommitTimeout (replicate(), "not our
// heartbeat mechanism", 5–10 s with raftnode's DefaultConfig), whatever
// the follower already holds: on an idle cluster it names the leader's
// last entry and commit index, both unchanged since the follower last took
// them. Unlike a heartbeat it is a full request on both ends (the leader
// reads the previous entry from its log store; the follower's raft
// goroutine checks it and its commit index). A profile of an idle 50-agent
// leader put 21 % of its CPU in these appends and 26 % in heartbeats
// (closing note s19): they grow with the cluster on the leader alone.
//
// What the leader learns from the answer is already known: the follower
// took exactly this request (same term, previous entry and commit index)
// before, and its log keeps what it took (raft's log is durable). What
// the follower learns is nothing new: its commit index is already the
// leader's. So while a non-voter's answer to the same request is recent
// and its heartbeats say it is alive and holds that entry, the call is
// answered with that answer and nothing goes to the wire
// (redundantAppend). Anything new goes out: an entry, another previous
// entry, another commit index, a new term.
//
// Only non-voters: raft renews the leader's lease from every successful
// replication call (setLastContact), and a voter's contact must be a real
// answer (the lease counts voters only; a non-voter's contact is read by
// nothing). What a local answer could hide, and why each is covered:
//
//   - A follower that restarted forgets its commit index until an
//     AppendEntries tells it. Its restart closes the leader's connections
//     to it (raftnode pools one per follower), so the next heartbeat or
//     call on the pooled one fails, or the one in flight does, and any
//     failure drops the kept answer: the next append goes to the wire
//     (TestRaftNonvoterRestartOverTCP, TestRaftNonvoterIdleAppendsAnswered).
//     Should a restart ever pass unseen (a transport that redials without
//     failing), the follower is told at the latest when the kept answer
//     ages out (reuseAppendFor): a real append per non-voter per minute.
//   - A dead follower: the call is answered locally only while its last
//     real heartbeat answer is younger than twice its heartbeat interval;
//     after that the append goes to the wire, fails, and raft counts the
//     failure as before.
//   - A follower that was given a snapshot, or refused anything, is asked
//     again: InstallSnapshot and any refusal drop the kept answer.
const reuseAppendFor = time.Minute

// appendAnswer is a follower's last successful answer to an
// AppendEntries that carried no entries.
type appendAnswer struct {
	addr raft.ServerAddress
	// term, prevIndex, prevTerm and commit are the request's.
	term, prevIndex, prevTerm, commit uint64
	// at is when the request was sent.
	at   time.Time
	resp raft.AppendEntriesResponse
}

// redundantAppend decides whether req, raft's AppendEntries to a peer
// that is not a heartbeat, tells the peer nothing it has not already
// taken, so that it is answered with kept (the peer's last successful
// answer to such a request) instead of going to the wire: only for a
// non-voter (nonvoter; slow is its heartbeat interval), only an empty
// request identical in term, previous entry and commit index to the kept
// one, of the newest term the transport has seen, sent to the same
// address less than reuseAppendFor ago, while hb (the peer's last real
// heartbeat answer) is a success of this term, younger than 2×slow, whose
// log holds the previous entry.
func redundantAppend(req *raft.AppendEntriesRequest, addr raft.ServerAddress, kept *appendAnswer, hb *heartbeatAnswer,
	nonvoter bool, now time.Time, slow time.Duration, newestTerm uint64) bool {
	if !nonvoter || slow <= 0 || kept == nil || hb == nil || len(req.Entries) > 0 || IsHeartbeat(req) {
		return false
	}
	if req.Term != newestTerm || kept.addr != addr || kept.term != req.Term ||
		kept.prevIndex != req.PrevLogEntry || kept.prevTerm != req.PrevLogTerm || kept.commit != req.LeaderCommitIndex {
		return false
	}
	if age := now.Sub(kept.at); age < 0 || age >= reuseAppendFor {
		return false
	}
	if hb.addr != addr || !hb.resp.Success || hb.term != req.Term || hb.resp.LastLog < req.PrevLogEntry {
		return false
	}
	age := now.Sub(hb.sentAt)
	return age >= 0 && age < 2*slow
}

// answerKept answers args from the peer's kept answer when
// redundantAppend says it tells the peer nothing new.
func (t *Transport) answerKept(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seeTerm(args.Term)
	kept := t.appended[id]
	if !redundantAppend(args, target, kept, t.last[id], t.nonvoters[id], now, t.slow, t.term) {
		return false
	}
	*resp = kept.resp
	t.answeredKept.Add(1)
	return true
}

// keepAppend records how a call that is not a heartbeat ended: a
// successful empty one is kept for redundantAppend, anything else drops
// what was kept (the peer's log or connection may have changed). t.mu held.
func (t *Transport) keepAppend(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse, now time.Time, err error) {
	if err != nil || !resp.Success || resp.Term != args.Term || len(args.Entries) > 0 {
		delete(t.appended, id)
		return
	}
	t.appended[id] = &appendAnswer{addr: target, term: args.Term, prevIndex: args.PrevLogEntry,
		prevTerm: args.PrevLogTerm, commit: args.LeaderCommitIndex, at: now, resp: *resp}
}

// AnsweredKept counts the appends answered from a kept answer.
func (t *Transport) AnsweredKept() uint64 { return t.answeredKept.Load() }
