package leaderloop

// Raft's verdict on a node, beside gossip's. The leader hears every node of
// the raft configuration answer a heartbeat once per beat (raftnode's held
// heartbeats: 300 ms for a voter, 400 ms for a non-voter in the fast
// profile), over the cluster port, whatever gossip does. A node that has
// answered nothing for the silence window is marked down without waiting
// for gossip's probe, indirect probes and suspicion. Why:
//
//   - Detection no longer waits on gossip's slowest path. The tolerant
//     profile's probes (800 ms, then 0.8 s of suspicion) found a dead host
//     in about 2.2 s; the leader hears the silence in its window (1.8 s
//     after the last answer, ~1.3 s after a death on average) plus one
//     beat.
//   - It costs nothing while the cluster is idle: the leader looks for
//     overdue answers on raft's own beats (Config.BeatInterval, the grid
//     the held heartbeats are released on), in the wake-up that sends
//     them, and arms a timer only for a node that has already missed one.
//
// What keeps it from accusing a live node, or flapping:
//
//   - Only a node raft has heard from since this term saw it ready counts
//     (readySince): a new leader, a node back from down, or a node raft
//     cannot reach at all (its cluster port filtered) is left to gossip
//     until raft's answers flow.
//   - A node marked down for silence comes back only once raft has heard
//     from it again (Unanswered), not on gossip's word alone: gossip still
//     calls a node alive that raft cannot reach, and would bring it back at
//     once, to be silenced again a window later.
//   - A ready node that announced a restart is exempt (StatusChanges), as
//     from gossip's verdict.
//   - Only while raft hears some other member within the window: a leader
//     that was stalled itself (paused, starved) finds every answer old at
//     once. So a leader alone with one follower leaves that follower to
//     gossip.
//   - The window grows with the cluster (SilenceWindowFor), as gossip's
//     suspicion does: the more agents share a starved machine, the later
//     their answers come.
//
// A new leader knows when it last heard from the leader it replaced
// (raftnode.Raft.LostLeader: that leader's last heartbeat). It takes that as
// the node's last answer (seed), so a dead leader's host is marked down as
// soon as the new leader's work starts, not a window later.

import (
	"math"
	"time"

	"github.com/shoal-org/shoal/api"
)

// SilenceWindowFor scales base, a profile's silence window for up to ten
// nodes, to a cluster of n nodes: base*max(1, log10(n)), as memberlist
// scales its suspicion.
func SilenceWindowFor(base time.Duration, n int) time.Duration {
	return time.Duration(float64(base) * max(1, math.Log10(float64(max(n, 1)))))
}

// Silent is raft's verdict on one ready node: raft last heard from it at
// heardAt (zero: never), after readySince (when this term first saw it
// ready; zero for a seeded previous leader), and nothing since for window.
func Silent(heardAt, readySince, now time.Time, window time.Duration) bool {
	return window > 0 && !heardAt.IsZero() && heardAt.After(readySince) && now.Sub(heardAt) >= window
}

// silence is the leader's per-term record behind Silent and Unanswered.
// Only the leader's pass loop touches it.
type silence struct {
	window time.Duration
	// readySince: when this term first saw each ready node ready.
	readySince map[string]time.Time
	// seeded: a last answer known from before this term (the previous
	// leader's last heartbeat to this node).
	seeded map[string]time.Time
	// silenced: when each node was marked down for silence.
	silenced map[string]time.Time
	// members: the raft configuration at the last pass.
	members map[string]bool
}

func newSilence(window time.Duration) *silence {
	return &silence{window: window, readySince: map[string]time.Time{}, seeded: map[string]time.Time{},
		silenced: map[string]time.Time{}, members: map[string]bool{}}
}

// seed records the previous leader's last heartbeat as its last answer.
func (s *silence) seed(id string, at time.Time) {
	s.seeded[id] = at
	s.readySince[id] = time.Time{}
}

// observe updates the record from one pass's view: each node's recorded
// status and the raft configuration's members.
func (s *silence) observe(statuses map[string]string, members map[string]bool, now time.Time) {
	s.members = members
	for id, st := range statuses {
		if st == api.NodeReady {
			if _, ok := s.readySince[id]; !ok {
				s.readySince[id] = now
			}
			delete(s.silenced, id)
			continue
		}
		delete(s.readySince, id)
	}
	for id := range s.readySince {
		if _, ok := statuses[id]; !ok {
			delete(s.readySince, id)
		}
	}
	for id := range s.silenced {
		if _, ok := statuses[id]; !ok {
			delete(s.silenced, id)
		}
	}
}

// heard is raft's last answer from id, or the seeded one if later.
func (s *silence) heard(id string, raftHeard time.Time) time.Time {
	if at := s.seeded[id]; at.After(raftHeard) {
		return at
	}
	return raftHeard
}

// silent reports Silent for a ready node of the raft configuration,
// provided raft heard another member within the window (othersHeard): a
// leader that was itself stalled (a pause, a starved CPU) finds every
// answer old at once, and that says nothing about the nodes.
func (s *silence) silent(id string, heardOf func(string) time.Time, now time.Time) bool {
	since, ok := s.readySince[id]
	return ok && s.members[id] && Silent(s.heard(id, heardOf(id)), since, now, s.window) && s.othersHeard(id, heardOf, now)
}

// othersHeard reports whether raft heard a member other than id within
// the window.
func (s *silence) othersHeard(id string, heardOf func(string) time.Time, now time.Time) bool {
	for m := range s.members {
		if m != id && now.Sub(heardOf(m)) < s.window {
			return true
		}
	}
	return false
}

// unanswered reports whether id, marked down for silence, has not answered
// raft since (while it is in the raft configuration).
func (s *silence) unanswered(id string, raftHeard time.Time) bool {
	at, ok := s.silenced[id]
	return ok && s.members[id] && !raftHeard.After(at)
}

// due is when the next node becomes silent among the ready members that
// have already missed an answer (heard more than interval ago); ok is false
// when every one answered within interval, so nothing need be timed.
func (s *silence) due(heardOf func(id string) time.Time, now time.Time, interval time.Duration) (time.Time, bool) {
	if s.window <= 0 {
		return time.Time{}, false
	}
	var next time.Time
	for id, since := range s.readySince {
		if !s.members[id] {
			continue
		}
		at := s.heard(id, heardOf(id))
		if at.IsZero() || !at.After(since) || now.Sub(at) <= interval {
			continue
		}
		if d := at.Add(s.window); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, !next.IsZero()
}
