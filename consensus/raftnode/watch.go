package raftnode

// The follower's watch on its leader. Why: a dead leader used to be found
// by gossip (node's membership), whose verdict cut raft's timeouts to the
// lease (ExpediteElection) so the survivors campaigned at once. That tied
// failover to gossip's probe rate, the largest part of an idle agent's
// wake-ups. A follower already hears the leader's heartbeat every
// HeartbeatInterval over raft's own connection; when it hears nothing for
// Timing.LeaderSilence it says so (LeaderSilent, SilenceCh), and node's
// leader loop asks for the quick election exactly as on gossip's verdict.
//
// Each heartbeat received pushes the timer back
// (heartbeat.Transport.SetHeartbeatHandler), so it fires only after a
// silence. Pushing it back is not free, though: Go's timer heap keeps a
// timer moved later at its old deadline until that deadline comes round,
// and the process wakes up then to find nothing due. With heartbeats every
// beat, that stale deadline is the first push's: one heartbeat's arrival
// plus LeaderSilence. At 700 ms (two 300 ms beats and 100 ms) it fell
// 100 ms after a heartbeat, a wake-up of its own every 600 ms: 34 of the
// 64 timer wake-ups of an idle fast follower in 20 s (strace of
// epoll_pwait; with sysmon's, about three thread switches each, of ~30 a
// second). A silence of whole beats puts the stale deadline on a later
// heartbeat's arrival, so the same wake-up handles both (Timing: fast's is
// two beats). When it fires it checks raft's own last contact first
// (entries arrive outside the heartbeat path, and a transport without a
// heartbeat fast path calls no hook): if that is recent it waits out the
// rest; while the leader stays silent it looks again every LeaderSilence.
// On a leader it stops, and is armed again when this node loses
// leadership (noteLeader).
//
// A false alarm (one follower's heartbeats late) is harmless: pre-vote
// keeps the others, which still hear the leader, from granting it an
// election, and the next heartbeat clears it.

import (
	"sync/atomic"
	"time"
)

// leaderWatch is one follower's watch; see the top of the file.
type leaderWatch struct {
	after time.Duration
	// lastContact and leads read raft (nil until raft has started).
	lastContact atomic.Pointer[func() time.Time]
	leads       atomic.Pointer[func() bool]
	timer       *time.Timer
	silent      atomic.Bool
	ch          chan struct{}
}

// newLeaderWatch returns a watch that calls a leader silent after after;
// 0 returns nil (no watch).
func newLeaderWatch(after time.Duration) *leaderWatch {
	if after <= 0 {
		return nil
	}
	w := &leaderWatch{after: after, ch: make(chan struct{}, 1)}
	w.timer = time.AfterFunc(after, w.fire)
	return w
}

// bind gives the watch raft's last contact and leadership.
func (w *leaderWatch) bind(lastContact func() time.Time, leads func() bool) {
	w.lastContact.Store(&lastContact)
	w.leads.Store(&leads)
}

func (w *leaderWatch) signal() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// contact is called on every heartbeat received.
func (w *leaderWatch) contact() {
	w.timer.Reset(w.after)
	if w.silent.Swap(false) {
		w.signal()
	}
}

// arm restarts the wait without clearing a silence (leadership lost).
func (w *leaderWatch) arm() { w.timer.Reset(w.after) }

func (w *leaderWatch) fire() {
	lc, leads := w.lastContact.Load(), w.leads.Load()
	if lc == nil || leads == nil {
		w.timer.Reset(w.after)
		return
	}
	if (*leads)() {
		return // armed again by noteLeader when leadership is lost
	}
	if quiet := time.Since((*lc)()); quiet < w.after {
		w.timer.Reset(w.after - quiet)
		if w.silent.Swap(false) {
			w.signal()
		}
		return
	}
	if !w.silent.Swap(true) {
		w.signal()
	}
	// Look again while silent: contact may come back by a path that calls
	// no hook (entries, a transport without a heartbeat fast path).
	w.timer.Reset(w.after)
}

func (w *leaderWatch) stop() { w.timer.Stop() }

// LeaderSilent reports whether this follower has heard nothing from a
// leader for Timing.LeaderSilence (false without a watch, and on the
// leader).
func (r *Raft) LeaderSilent() bool {
	return r.watch != nil && r.watch.silent.Load() && !r.IsLeader()
}

// SilenceCh receives when LeaderSilent changes (coalesced: re-read
// LeaderSilent). Nil without a watch.
func (r *Raft) SilenceCh() <-chan struct{} {
	if r.watch == nil {
		return nil
	}
	return r.watch.ch
}
