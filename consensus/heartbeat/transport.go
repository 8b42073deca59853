// Package heartbeat is the thinning transport under Shoal's raft
// (consensus/raftnode): it holds raft's heartbeats to a grid of beats.
//
// Why: an idle cluster's largest cost is raft's heartbeats. hashicorp/raft
// v1.8.0 runs one heartbeat goroutine per follower (voters and non-voters
// alike, replication.go heartbeat()) that sends an empty AppendEntries every
// HeartbeatTimeout/10 to /5 — 100–200 ms at our 1 s timeout, each a TLS
// round trip — and it ties that period to the timeout: raising the timeout
// to send fewer would slow failover (DefaultConfig). etcd keeps the two
// apart (heartbeat-interval vs election-timeout); Transport does the
// same under raft: a real heartbeat reaches a voter once per
// HeartbeatInterval (a non-voter once per nonvoterInterval). raft's calls
// in between are held: the call blocks until the follower's next real
// heartbeat is due, and then goes to the wire. A call is held only while
// the follower's last real answer
//
//   - succeeded,
//   - carried the term of the request now being held (and was sent in
//     that term), and
//   - is younger than the interval, counted from when its request was
//     sent (the follower was alive at some point after that).
//
// Anything else goes to the wire untouched: the first heartbeat to a peer, a
// heartbeat of a new term, one after a failed, refused or old answer, every
// heartbeat while VerifyLeader is in flight, and every RPC that is not a
// heartbeat (AppendEntries carrying entries or a commit index, votes,
// snapshots, TimeoutNow), except raft's idle appends to a non-voter that
// took the same one already, which are answered on the leader
// (idleappend.go). A transport error or a higher term on any
// AppendEntries to the peer drops its last answers at once.
//
// Held rather than answered from the last answer (as this file did
// before): an answer costs the leader a wake-up of raft's goroutine for
// that follower every 100–400 ms and ~0.1–0.2 ms of CPU each; held, raft's
// goroutine makes one call per real heartbeat. And the held heartbeats of
// all voters (of all non-voters) fall on the same beats (every interval
// from BeatOrigin, waitForHeartbeat), so one wake-up of the leader sends
// them all, together with the agent's other periodic loops (node/resync).
// On idle 3-node clusters (FootprintIdle3, one run each, side by side)
// the leader went from 0.96 % of a core to 0.78 % (fast) and from 0.51 %
// to 0.36 % (tolerant), with node's aligned tickers and nftables watch.
// But a held voter renews the lease only once per interval, with its real
// answer, where an answered one renewed it every raft tick: the lease is
// therefore well above the interval (600 ms against 300 ms, 1.5 s against
// 1 s), which keeps the margin a starved leader had (300 ms, 500 ms). The
// lease is also the shortest timeout an expedited election may use (raft
// refuses a heartbeat timeout below it): 600 ms instead of 500 ms, which
// gossip's 0.7 s to declare a dead leader mostly hides (failover, 10 runs
// each, median 1.61 s before and 1.72 s after, both bimodal: 1.1 s or
// about 2 s after a split vote).

// A heartbeat is what raft's heartbeat() sends and what NetworkTransport's
// receiving fast path recognises: Term set, a leader address, no entries,
// PrevLogEntry, PrevLogTerm and LeaderCommitIndex all 0. replicateTo never
// sends that once the log holds an entry (its request names the previous
// entry or carries entries), and a leader always has one.
//
// Why this is safe in hashicorp/raft v1.8.0:
//
//   - Followers. A follower starts an election only when it has heard
//     nothing from the leader for HeartbeatTimeout. It hears a real
//     heartbeat every HeartbeatInterval at most (a beat never comes later
//     than the interval; the first after a held call may come sooner):
//     300 ms of a 1 s timeout with DefaultTiming, 1 s of 2 s with
//     QuietTiming. The expedited timeout node sets once gossip has declared
//     the leader dead (the lease: 600 ms, 1.5 s) may be shorter than
//     QuietTiming's silences, which is the point: the election starts at
//     once. Should gossip be wrong about the leader on one follower,
//     pre-vote keeps the others, which still know the leader, from
//     granting an election, and the next heartbeat brings it back.
//   - The leader's lease. heartbeat() records contact (setLastContact) when
//     a call returns: a voter's contact is renewed once per interval, with
//     the real answer, so the lease is well above the interval and a
//     partitioned leader steps down within it (600 ms, 1.5 s; before,
//     replayed answers made that lease + interval: 800 ms, 2 s). Nothing in
//     Shoal leans on the lease being tighter: consistent reads go through a
//     Barrier (node's readIndex), which needs a quorum to commit, never
//     through the lease.
//   - Terms. A held call of an older term goes to the wire at once when a
//     newer term is seen, where the follower refuses it; heartbeat()
//     ignores the answer's term (only replication and votes step a leader
//     down on a higher term), so an answer cannot hide a newer term from
//     raft, and a held call whose peer's last answer carried another term
//     is not held.
//   - VerifyLeader counts heartbeat answers. Raft.VerifyLeader,
//     for whoever calls it (Shoal does not), sets force while it is in
//     flight, so the heartbeats it triggers go to the wire, the held ones at
//     once.
//
// Non-voters are held longer: a non-voter needs no heartbeat for raft's own
// sake (checkLeaderLease counts voters; a non-voter never campaigns), so
// theirs come every nonvoterInterval (TestRaftNonvoterHeartbeatsHeld).
// With 47 non-voters of 50 agents the idle leader went from 10.9 % of a
// core and 2198 wake-ups a second to 7.6 % and 1461 (README.md, one run
// each on a shared machine). The interval
// (Timing.nonvoterInterval: HeartbeatInterval + HeartbeatTimeout/10) is
// set by what Shoal reads of a non-voter's heartbeats, not raft: the
// non-voter forgets its leader after HeartbeatTimeout of silence (then it
// forwards no write, counts as not synced and asks for a quick election),
// the leader's HeardFrom must find an answer within node's HeardWindow,
// and the reconciler's fence counts the silence. It keeps the longest
// silence within what a voter already sees, so none of them changes.
//
// With KeepNonvoters a non-voter's call does not even return between its
// real heartbeats (keepHolding): raft's own timer between two calls to a
// follower is then not a wake-up of the leader either.
//
// A held call decides again at once when the peer stops being a non-voter
// (raftnode takes it out before it asks raft to promote it: from the new
// configuration on the lease counts its answers, so it is due after the
// voter's interval); it goes to the wire at once while VerifyLeader runs
// or when a newer term is seen (the held request is stale); it ends with
// ErrTransportShutdown on StopHolding (raft's Shutdown waits
// for its heartbeat goroutines, so Raft.Shutdown closes the holds first).
// Only heartbeats are held. raftnode keeps the set of non-voters: read
// from the configuration when this node becomes leader, emptied when it is
// not, and refreshed after every membership change it makes; a peer it
// does not list counts as a voter.
//
// The pure decisions are lastAnswerFresh and waitForHeartbeat;
// Transport is their thin apply half.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// heartbeatAnswer is a follower's last real answer to a heartbeat.
type heartbeatAnswer struct {
	// addr is where it was sent; a peer that moved is asked again.
	addr raft.ServerAddress
	// term is the term of the request it answered.
	term uint64
	// sentAt is when that request was sent.
	sentAt time.Time
	resp   raft.AppendEntriesResponse
}

// IsHeartbeat reports whether req is one of raft's heartbeats (see the top
// of the file), using the test of NetworkTransport's heartbeat fast path.
func IsHeartbeat(req *raft.AppendEntriesRequest) bool {
	return req.Term != 0 && (len(req.Addr) > 0 || len(req.Leader) > 0) &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// lastAnswerFresh decides whether last (nil when there is none), the
// peer's last real answer, still vouches for the peer at now, so that req,
// an AppendEntries to addr, need not go to the wire yet: only a heartbeat,
// only when not forced and thinning is on (interval > 0), and only a
// successful answer of the same term, from the same address, younger than
// interval.
func lastAnswerFresh(req *raft.AppendEntriesRequest, addr raft.ServerAddress, last *heartbeatAnswer,
	now time.Time, interval time.Duration, forced bool) bool {
	if interval <= 0 || forced || last == nil || !IsHeartbeat(req) {
		return false
	}
	if last.addr != addr || !last.resp.Success || last.term != req.Term || last.resp.Term != req.Term {
		return false
	}
	age := now.Sub(last.sentAt)
	return age >= 0 && age < interval
}

// waitForHeartbeat decides whether req, a call to a peer whose real
// heartbeats are slow apart (0: none held), is held until the peer's next
// real heartbeat is due instead of being sent at once, and until when: only
// a heartbeat whose peer's last real answer is fresh under slow
// (lastAnswerFresh), of the newest term this leader has seen, while the
// transport is open. It is due on the last beat of
// beats at or before slow after the last real one, never later, so the
// heartbeats to every peer fall on the same beats (one wake-up of the
// leader for all of them) and none comes later than slow. When it returns
// false the call goes to the wire.
func waitForHeartbeat(req *raft.AppendEntriesRequest, addr raft.ServerAddress, last *heartbeatAnswer,
	now time.Time, slow time.Duration, beats beatGrid, forced, closed bool, newestTerm uint64) (time.Time, bool) {
	if slow <= 0 || closed || req.Term < newestTerm || !lastAnswerFresh(req, addr, last, now, slow, forced) {
		return time.Time{}, false
	}
	until := beats.atOrBefore(last.sentAt.Add(slow))
	if !until.After(last.sentAt) {
		until = last.sentAt.Add(slow) // a grid coarser than slow: unaligned
	}
	if !now.Before(until) {
		return time.Time{}, false
	}
	return until, true
}

// beatGrid is the leader's beats: every 'every' from origin. The zero grid
// aligns nothing.
type beatGrid struct {
	origin time.Time
	every  time.Duration
}

// atOrBefore returns the last beat at or before t (t itself without a grid
// or before its origin).
func (g beatGrid) atOrBefore(t time.Time) time.Time {
	if g.every <= 0 || t.Before(g.origin) {
		return t
	}
	return t.Add(-(t.Sub(g.origin) % g.every))
}

// Transport is a raft.Transport that sends raft's heartbeats to each
// voter once per interval and to each non-voter once per slow, holding
// raft's calls in between until the next one is due (see the package
// doc). It also forwards
// RequestPreVote (raft turns pre-vote off for a transport without it) and
// Close. Safe for concurrent use.
type Transport struct {
	raft.Transport
	interval time.Duration
	// slow is the interval of a non-voter's heartbeats; 0 holds none.
	slow time.Duration
	// keepNonvoters keeps a non-voter's heartbeat call across its real
	// heartbeats (keepHolding).
	keepNonvoters bool
	// beats align the real heartbeats of all voters (waitForHeartbeat),
	// slowBeats those of all non-voters.
	beats, slowBeats beatGrid
	now              func() time.Time
	// hbTimeout, when set, bounds a heartbeat's round trip
	// (heartbeatWithin).
	hbTimeout time.Duration
	// onHeartbeat, when set, is called for every heartbeat this node
	// receives (the follower's leader watch, raftnode's watch.go).
	onHeartbeat func()
	// observe, when set (tests), is told of every heartbeat sent: when,
	// and its error.
	observe func(id raft.ServerID, at time.Time, err error)
	// answered, when set, is told of every successful real heartbeat
	// answer (raftnode's followerAnswered: a follower that lacks entries or
	// their commit is caught up at once). Set after raft starts, hence
	// atomic.
	answered atomic.Pointer[func(FollowerAnswer)]

	// force > 0 sends every heartbeat (VerifyLeader in flight).
	force atomic.Int32
	// sent and held count heartbeats sent and held for the peer's next
	// real one; kept the heartbeats sent in a call kept after an earlier
	// one (keepHolding); answeredKept the appends answered from a kept
	// answer (idleappend.go).
	sent, held, kept, answeredKept atomic.Uint64
	// holding is how many calls are held now (tests).
	holding atomic.Int32

	mu   sync.Mutex
	last map[raft.ServerID]*heartbeatAnswer
	// nonvoters are the peers whose heartbeats are held (SetNonvoters); a
	// peer not in it is treated as a voter.
	nonvoters map[raft.ServerID]bool
	// term is the newest term in any request or answer this transport
	// carried; closed is set by close.
	term   uint64
	closed bool
	// wake is closed (and replaced) to end every held call at once, so it
	// decides again: a promotion, a forced verify, a newer term, close.
	wake chan struct{}
	// heard is when each follower last answered an AppendEntries sent over
	// this transport (a real heartbeat or a replication request), however
	// it answered: the leader's second opinion on a node gossip calls dead
	// (Raft.HeardFrom).
	heard map[raft.ServerID]time.Time
	// returned is when a call to each follower last returned an answer to
	// raft. raft's own last contact with a follower (what its leader lease
	// counts) moves only then, and a non-voter's held call returns seldom
	// (keepHolding), so it can lag heard by many beats (AwaitReturn).
	returned map[raft.ServerID]time.Time
	// repl is how raft's replication to each follower went (answered).
	repl map[raft.ServerID]*replRecord
	// appended is each follower's last successful answer to an empty
	// AppendEntries (idleappend.go).
	appended map[raft.ServerID]*appendAnswer
	// swept is when sweep last ran.
	swept time.Time
}

// forgetAfter: what the transport holds of a server is dropped once it has
// been that long without a real answer. Nothing reads older entries (a
// last answer counts for one interval, HeardFrom's readers look back
// under a few seconds), and without the sweep a cluster that replaces its
// nodes over months would keep an entry for every node it ever had.
const forgetAfter = 10 * time.Minute

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
)

// Config is how a Transport holds heartbeats (raftnode derives it from
// its Timing).
type Config struct {
	// Interval is the time between two real heartbeats to a voter; 0
	// sends every one.
	Interval time.Duration
	// Slow is the time between two real heartbeats to a non-voter; 0
	// holds none of theirs.
	Slow time.Duration
	// KeepNonvoters keeps raft's heartbeat call to a non-voter after its
	// real heartbeat went well, for the next one (keepHolding); without
	// it the call returns after each.
	KeepNonvoters bool
	// Origin is where the beats are counted from, so that they fall with
	// the agent's other periodic loops. Zero: when the transport is made.
	Origin time.Time
	// Timeout, when set, bounds a heartbeat's round trip
	// (heartbeatWithin).
	Timeout time.Duration
	// OnHeartbeat, when set, is called for every heartbeat this node
	// receives.
	OnHeartbeat func()
	// Observe, when set (tests), is told of every heartbeat sent: when,
	// and its error.
	Observe func(id raft.ServerID, at time.Time, err error)
}

// New wraps inner, which must also implement raft.WithPreVote (both of
// raft's transports do).
func New(inner raft.Transport, c Config) *Transport {
	t := newTransport(inner, c.Interval)
	if !c.Origin.IsZero() {
		t.beats.origin = c.Origin
	}
	t.slow, t.keepNonvoters = c.Slow, c.KeepNonvoters
	t.slowBeats = beatGrid{origin: t.beats.origin, every: c.Slow}
	t.hbTimeout, t.onHeartbeat, t.observe = c.Timeout, c.OnHeartbeat, c.Observe
	return t
}

// newTransport is New with voters' beats only, counted from now.
func newTransport(inner raft.Transport, interval time.Duration) *Transport {
	return &Transport{Transport: inner, interval: interval, now: time.Now,
		beats: beatGrid{origin: time.Now(), every: interval},
		last:  map[raft.ServerID]*heartbeatAnswer{}, heard: map[raft.ServerID]time.Time{}, repl: map[raft.ServerID]*replRecord{},
		returned: map[raft.ServerID]time.Time{},
		appended: map[raft.ServerID]*appendAnswer{}, nonvoters: map[raft.ServerID]bool{}, wake: make(chan struct{})}
}

// SetAnswered sets f to be told of every successful answer to a real
// heartbeat (raftnode catches up a follower that lacks entries or their
// commit). It may be set after raft has started.
func (t *Transport) SetAnswered(f func(FollowerAnswer)) { t.answered.Store(&f) }

// Sent and Held count the heartbeats sent, and raft's calls held until
// the peer's next real heartbeat was due.
func (t *Transport) Sent() uint64 { return t.sent.Load() }

// Held: see Sent.
func (t *Transport) Held() uint64 { return t.held.Load() }

// Kept counts the heartbeats sent in calls kept after an earlier one
// (keepHolding).
func (t *Transport) Kept() uint64 { return t.kept.Load() }

// Holding is how many of raft's calls are held now.
func (t *Transport) Holding() int { return int(t.holding.Load()) }

// wakeAll ends every held call so that it decides again. t.mu held.
func (t *Transport) wakeAll() {
	close(t.wake)
	t.wake = make(chan struct{})
}

// seeTerm records term when it is the newest yet, waking the held calls
// (theirs is then stale: they go to the wire at once). t.mu held.
func (t *Transport) seeTerm(term uint64) {
	if term > t.term {
		t.term = term
		t.wakeAll()
	}
}

// SetNonvoters replaces the set of peers whose heartbeats are held. A
// peer that leaves the set (a promotion) gets its held call sent at once.
func (t *Transport) SetNonvoters(ids []raft.ServerID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := make(map[raft.ServerID]bool, len(ids))
	for _, id := range ids {
		next[id] = true
	}
	left := false
	for id := range t.nonvoters {
		left = left || !next[id]
	}
	t.nonvoters = next
	if left {
		t.wakeAll()
	}
}

// SetVoter takes id out of the non-voters before it is promoted: its held
// call, if any, goes to the wire at once.
func (t *Transport) SetVoter(id raft.ServerID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nonvoters[id] {
		delete(t.nonvoters, id)
		t.wakeAll()
	}
}

func (t *Transport) markReturned(id raft.ServerID) {
	t.mu.Lock()
	t.returned[id] = t.now()
	t.mu.Unlock()
}

// returnPoll is how often AwaitReturn looks.
const returnPoll = 10 * time.Millisecond

// AwaitReturn waits until a call to id returns an answer to raft after
// since, for at most wait; false when none did. Why: raft's leader lease
// counts a voter by the last answer raft itself saw, and a non-voter's
// heartbeats are held across many beats without returning (keepHolding),
// so raft's view of a node about to be promoted can be seconds old
// although the node answers every beat. Promoted so, the new voter counts
// in the quorum at once with a stale contact, and a leader that cannot
// then reach it within the lease steps down. The caller takes the peer
// out of the non-voters first (SetVoter), so its next answer returns.
func (t *Transport) AwaitReturn(ctx context.Context, id raft.ServerID, since time.Time, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		t.mu.Lock()
		at := t.returned[id]
		t.mu.Unlock()
		if at.After(since) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(returnPoll):
		}
	}
}

// ForceOn and ForceOff bracket a VerifyLeader: while it runs every
// heartbeat goes to the wire, the held ones at once.
func (t *Transport) ForceOn() {
	t.force.Add(1)
	t.mu.Lock()
	t.wakeAll()
	t.mu.Unlock()
}

func (t *Transport) ForceOff() { t.force.Add(-1) }

// StopHolding ends every held call with ErrTransportShutdown and holds no more.
// Raft.Shutdown calls it before raft's own shutdown, which waits for its
// heartbeat goroutines.
func (t *Transport) StopHolding() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		t.wakeAll()
	}
}

// AppendEntries holds a heartbeat until the peer's next real one is due
// (waitForHeartbeat), and otherwise sends the request and records the
// answer. A non-voter's heartbeat call is kept after its real heartbeat
// went well (keepHolding): it sends the next one on the next beat in the
// same call, and returns only when something raft must see happens.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	hb := IsHeartbeat(args)
	now := t.now()
	if !hb && t.answerKept(id, target, args, resp, now) {
		t.markReturned(id)
		return nil
	}
	if !hb {
		err := t.send(id, target, args, resp, now, false)
		if err == nil {
			t.markReturned(id)
		}
		return err
	}
	for kept := 0; ; kept++ {
		var err error
		if now, err = t.holdHeartbeat(id, target, args, now, kept > 0); err != nil {
			return err
		}
		err = t.send(id, target, args, resp, now, true)
		t.mu.Lock()
		keep := t.keepNonvoters && kept < maxKept &&
			keepHolding(args, resp, err, t.nonvoters[id], t.slow, t.force.Load() > 0, t.closed, t.term)
		if !keep && err == nil {
			t.returned[id] = t.now()
		}
		t.mu.Unlock()
		if !keep {
			return err
		}
		t.kept.Add(1)
		now = t.now()
	}
}

// maxKept bounds how many heartbeats one kept call sends before it
// returns to raft anyway (10 s under DefaultTiming, 30 s under
// QuietTiming): raft's goroutine for a follower learns that it must stop
// (this node no longer leads, the peer left) only between calls, and
// raftnode ends the kept calls on those changes from raft's observations,
// which raft drops when their channel is full. Returning now and then
// bounds what a lost observation costs to at most maxKept heartbeats from
// a deposed leader, for one raft timer per follower every 25 beats.
const maxKept = 25

// keepHolding decides whether a heartbeat call, whose real heartbeat just
// went to the wire and came back with resp (or err), stays held for the
// peer's next one instead of returning to raft: only a non-voter's
// (slow > 0 holds theirs), only after a successful answer of the
// request's term, which is still the newest, and not while VerifyLeader
// runs or after StopHolding.
//
// Why: raft's heartbeat goroutine for a follower, once its call returns,
// waits a random HeartbeatTimeout/10 to /5 before the next one, a timer of
// its own per follower at no common instant: on a 50-agent leader ~120
// wake-ups a second for 47 non-voters, besides the beats that send them
// all. raft needs nothing from a non-voter's heartbeat (the lease counts
// voters), so the call stays here and the next heartbeat goes on the next
// beat, with the others. What raft must see still returns: a failure or a
// refusal (raft backs off and retries, and drops the answer it kept), a
// newer term, the peer's promotion (SetVoter, SetNonvoters: from then on
// the lease counts it), a forced verify and StopHolding. Leaving the
// configuration takes the peer out of the non-voters too (raftnode
// refreshes them after every change), so its goroutine ends after at most
// one more heartbeat.
func keepHolding(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, err error,
	nonvoter bool, slow time.Duration, forced, closed bool, newestTerm uint64) bool {
	return nonvoter && slow > 0 && !forced && !closed && err == nil &&
		resp.Success && resp.Term == args.Term && args.Term >= newestTerm
}

// holdHeartbeat holds a heartbeat call until the peer's next real
// heartbeat is due and returns when that is. kept: the call already sent
// one (keepHolding), so a StopHolding ends it instead of sending another.
func (t *Transport) holdHeartbeat(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, now time.Time, kept bool) (time.Time, error) {
	counted := false
	for waited := kept; ; waited = true {
		t.mu.Lock()
		t.seeTerm(args.Term)
		slow, beats := t.interval, t.beats
		if t.nonvoters[id] {
			slow, beats = t.slow, t.slowBeats
		}
		until, hold := waitForHeartbeat(args, target, t.last[id], now, slow, beats, t.force.Load() > 0, t.closed, t.term)
		wake, closed := t.wake, t.closed
		t.mu.Unlock()
		if closed && waited {
			return now, raft.ErrTransportShutdown
		}
		if !hold {
			return now, nil
		}
		if !counted {
			t.held.Add(1) // once per hold, a kept call's too
			counted = true
		}
		t.holding.Add(1)
		timer := time.NewTimer(until.Sub(now))
		select {
		case <-timer.C:
		case <-wake:
		}
		timer.Stop()
		t.holding.Add(-1)
		now = t.now()
	}
}

// send puts an AppendEntries on the wire (a heartbeat within hbTimeout)
// and records the answer.
func (t *Transport) send(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, now time.Time, hb bool) error {
	var err error
	if hb && t.hbTimeout > 0 {
		err = t.heartbeatWithin(id, target, args, resp)
	} else {
		err = t.Transport.AppendEntries(id, target, args, resp)
	}
	t.mu.Lock()
	if err == nil {
		t.heard[id] = t.now()
		t.seeTerm(resp.Term)
	}
	t.seeTerm(args.Term)
	t.sweep(now)
	if !hb {
		told := uint64(0)
		if err == nil && resp.Success {
			told = args.LeaderCommitIndex
		}
		t.noteReplication(id, now, err, told)
		t.keepAppend(id, target, args, resp, now, err)
	}
	var answer FollowerAnswer
	if hb {
		answer.LastLog = resp.LastLog
		if rec := t.repl[id]; rec != nil {
			answer.ReplFailed, answer.Told = rec.failed, rec.told
		}
	}
	switch {
	case err != nil || resp.Term > args.Term || (hb && !resp.Success):
		delete(t.last, id)
		delete(t.appended, id)
	case hb && resp.Term == args.Term:
		t.last[id] = &heartbeatAnswer{addr: target, term: args.Term, sentAt: now, resp: *resp}
	}
	t.mu.Unlock()
	if hb {
		t.sent.Add(1)
		if t.observe != nil {
			t.observe(id, now, err)
		}
		if f := t.answered.Load(); f != nil && err == nil && resp.Success {
			(*f)(answer)
		}
	}
	return err
}

// ErrTimeout: a heartbeat had no answer within the transport's
// heartbeat timeout.
var ErrTimeout = errors.New("no answer to the heartbeat in time")

// heartbeatWithin sends a heartbeat and gives up on it after hbTimeout,
// leaving the call to end in the background. Why: the wrapped transport
// bounds an RPC by its own timeout (TransportTimeout, 10 s, sized for
// replication batches on a loaded machine), and a heartbeat written into a
// connection whose peer is gone (a host whose link was cut, then its agent
// restarted) waits that long. raft's heartbeat goroutine for the peer then
// sends nothing else: the peer, back within seconds, was not heard for up
// to 10 s, so the leader's raft verdict (node/leaderloop's silence.go,
// which counts a node only once raft heard it since it came back) was
// blind to a second death in that time. Given up on, the call fails, raft
// retries after its backoff (at most HeartbeatTimeout/2) on a new
// connection, and the peer is heard within about a second of its return.
// The abandoned call holds its connection until the wrapped transport's
// timeout; the pool dials another.
func (t *Transport) heartbeatWithin(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	type answer struct {
		resp raft.AppendEntriesResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		a.err = t.Transport.AppendEntries(id, target, args, &a.resp)
		done <- a
	}()
	timer := time.NewTimer(t.hbTimeout)
	defer timer.Stop()
	select {
	case a := <-done:
		*resp = a.resp
		return a.err
	case <-timer.C:
		return fmt.Errorf("heartbeat to %s at %s: %w (%v)", id, target, ErrTimeout, t.hbTimeout)
	}
}

// sweep drops, at most once per forgetAfter, the entries of servers not
// heard from for forgetAfter: those of servers that left the
// configuration. Removal is not hooked instead because a removed server's
// last replication may still answer after RemoveServer returns. t.mu held.
func (t *Transport) sweep(now time.Time) {
	if now.Sub(t.swept) < forgetAfter {
		return
	}
	t.swept = now
	for id, at := range t.heard {
		if now.Sub(at) >= forgetAfter {
			delete(t.heard, id)
		}
	}
	for id, a := range t.last {
		if now.Sub(a.sentAt) >= forgetAfter {
			delete(t.last, id)
		}
	}
	for id, rec := range t.repl {
		if now.Sub(rec.at) >= forgetAfter {
			delete(t.repl, id)
		}
	}
	for id, at := range t.returned {
		if now.Sub(at) >= forgetAfter {
			delete(t.returned, id)
		}
	}
	for id, a := range t.appended {
		if now.Sub(a.at) >= forgetAfter {
			delete(t.appended, id)
		}
	}
}

// replRecord is how raft's replication to a follower went: anything but a
// heartbeat (entries, a commit index, a snapshot).
type replRecord struct {
	// failed: the last one failed on the transport. raft tries such a
	// follower again only when the next entry is dispatched or at
	// CommitTimeout.
	failed bool
	// told is the highest commit index a successful one carried to the
	// follower: heartbeats carry none, so a follower holding entries
	// past it may not know they are committed.
	told uint64
	// at is when it was last updated (sweep).
	at time.Time
}

// FollowerAnswer is what a follower's successful answer to a real
// heartbeat, and the replication to it so far, say (Transport.answered).
type FollowerAnswer struct {
	// LastLog is the follower's last log index.
	LastLog uint64
	// ReplFailed: raft's last replication to it failed on the transport.
	ReplFailed bool
	// Told is the highest commit index it was sent.
	Told uint64
}

// noteReplication records how raft's replication to id (anything but a
// heartbeat) ended on the transport, and the commit index it carried when
// the follower took it (0 otherwise). t.mu held.
func (t *Transport) noteReplication(id raft.ServerID, now time.Time, err error, told uint64) {
	rec := t.repl[id]
	if rec == nil {
		rec = &replRecord{}
		t.repl[id] = rec
	}
	rec.failed, rec.told, rec.at = err != nil, max(rec.told, told), now
}

// InstallSnapshot records whether the snapshot reached the follower: raft
// retries a failed one as it does a failed AppendEntries (answered).
func (t *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress,
	args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	err := t.Transport.InstallSnapshot(id, target, args, resp, data)
	told := uint64(0)
	if err == nil && resp.Success {
		told = args.LastLogIndex // a snapshot holds only committed entries
	}
	t.mu.Lock()
	t.noteReplication(id, t.now(), err, told)
	delete(t.appended, id)
	t.mu.Unlock()
	return err
}

// AppendEntriesPipeline declines, so raft replicates to every follower
// with plain AppendEntries calls over the transport's connection pool, the
// one its heartbeats use. Why: NetworkTransport gives each connection a
// 256 KiB write buffer (and the follower's side a 256 KiB read buffer), and
// a pipeline holds a connection of its own per follower for as long as the
// follower is in the configuration. At 100 agents that was ~25 MiB of the
// leader's buffers doing nothing between writes, on top of the heartbeat
// connections (a heap profile of a 30-node leader: 15.6 of its 20 MiB in
// use were these write buffers). Without the pipeline a follower costs the
// leader one connection; replication waits for each answer before sending
// the next batch (raft batches what is pending into one request), which a
// LAN round trip makes no slower for Shoal's rate of writes.
func (t *Transport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// SetHeartbeatHandler passes raft's heartbeat handler to the wrapped
// transport, telling onHeartbeat of each heartbeat first.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	hook := t.onHeartbeat
	if hook == nil || cb == nil {
		t.Transport.SetHeartbeatHandler(cb)
		return
	}
	t.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		hook()
		cb(rpc)
	})
}

// RequestPreVote forwards to the wrapped transport.
func (t *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

// RequestVote forwards to the wrapped transport; a campaign's term ends
// the calls held for an older term.
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	t.mu.Lock()
	t.seeTerm(args.Term)
	t.mu.Unlock()
	return t.Transport.RequestVote(id, target, args, resp)
}

// Close ends the held calls and closes the wrapped transport when it can
// be closed.
func (t *Transport) Close() error {
	t.StopHolding()
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// HeardFrom is when id last answered an AppendEntries (zero if never).
func (t *Transport) HeardFrom(id raft.ServerID) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.heard[id]
}
