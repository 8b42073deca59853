// Package profile holds the agent's failure-detection profiles
// (`shoal agent --gossip-profile`): gossip's timers, raft's heartbeat
// timing and the agent's GOMAXPROCS, chosen together.
package profile

import (
	"errors"
	"fmt"
	"time"

	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/membership"
)

// Profile is an agent's failure detection: gossip's probes, which find a
// dead host, and raft's heartbeats, which prove the leader alive, chosen
// together (`shoal agent --gossip-profile`).
//
// Why together: on an idle cluster these two are most of what an agent
// wakes up for, and each wake-up costs ~0.1–0.2 ms of CPU on small VMs
// (membership.go). A profile that slows gossip, and so finds a dead host in
// seconds rather than under one, gains nothing from raft heartbeats three
// times a second: gossip's verdict, not raft's timeout, is what starts a
// quick election (raftnode.Raft.ExpediteElection) and what marks a node
// down. So the quiet profiles also send raft's heartbeats once a second.
type Profile struct {
	Gossip membership.Timing
	Raft   raftnode.Timing
	// Procs, when set, is the agent's GOMAXPROCS unless the GOMAXPROCS
	// environment variable says otherwise (shoal agent sets it at start).
	// Why: with two Ps, each wake-up of an idle agent also wakes a second
	// thread that spins looking for work and finds none. With one, an idle
	// 3-node tolerant cluster used 13–17 % less CPU per agent, and scale
	// 10→50 was no slower (2.52/2.57 s against 2.67/2.90 s, two alternating
	// pairs on this 2-core machine): the agent's share of a start is small,
	// runc's processes do the rest, and they are not limited by it. Under
	// fast, two alternating pairs of 45 s on an idle 3-node cluster: 0.64 %
	// against 0.82 % of a core per follower (0.78), 1.17 % against 1.58 %
	// on the leader (0.74), 88 against 125 context switches a second. Go
	// preempts a long computation every 10 ms, so one P does not hold a
	// heartbeat or a probe behind it for longer than that.
	Procs int
	// Silence is raft's silence window (SilenceWindow).
	Silence time.Duration
}

// Default names the profile an agent runs unless told otherwise.
const Default = "fast"

// All are the failure-detection profiles an agent can be started with.
//
//   - fast: a dead host is found in under a second (0.75 s expected up to
//     10 nodes); its backends leave every load balancer within about a
//     second. Costs the most when idle. One P.
//   - tolerant: for agents that share starved CPUs (dense test rigs,
//     oversubscribed VMs, 100 agents on 2 cores) and for anyone who would
//     rather have an idle agent near-free: a dead host is found in 2 s up
//     to 10 nodes (2.8 s at 100), raft heartbeats once a second, and the
//     agent runs on one P.
var All = map[string]Profile{
	Default:    {Gossip: membership.DefaultTiming, Raft: raftnode.DefaultTiming, Procs: 1, Silence: 1200 * time.Millisecond},
	"tolerant": {Gossip: membership.TolerantTiming, Raft: raftnode.QuietTiming, Procs: 1, Silence: 1800 * time.Millisecond},
}

// Sentinel errors of the profiles.
var (
	// ErrUnknown: a profile name All lacks.
	ErrUnknown = errors.New("unknown gossip profile")
)

// ByName returns the profile called name ("" is Default).
func ByName(name string) (Profile, error) {
	if name == "" {
		name = Default
	}
	p, ok := All[name]
	if !ok {
		return Profile{}, fmt.Errorf("%w %q: want fast or tolerant", ErrUnknown, name)
	}
	return p, nil
}

// Check reports whether name is a profile an agent can run with ("" is
// the default, "fast").
func Check(name string) error {
	_, err := ByName(name)
	return err
}

// SilenceWindow is how long the leader waits after raft's last answer
// from a ready node before it marks the node down without gossip's verdict
// (node/leaderloop's silence.go), for clusters of up to ten nodes
// (leaderloop.SilenceWindowFor scales it with log10 of the size, as gossip
// scales its suspicion). Three non-voter heartbeat intervals under fast
// (1.2 s; gossip, at 0.75 s expected, is usually first), one and a half
// under tolerant (1.8 s): there raft's verdict comes first, about 1.3 s
// after a death on average, where gossip's 800 ms probes and 0.8 s of
// suspicion took about 2.2 s. A live agent answers every interval; the
// window leaves it two missed beats (fast) or half of one plus scheduling
// delay (tolerant, whose agents answer once a second).
func (p Profile) SilenceWindow() time.Duration { return p.Silence }

// HeardWindow is how recent a raft answer from a node must be for the
// leader to keep it ready although gossip calls it dead (leaderloop's
// second opinion). A live agent answers a real heartbeat every
// HeartbeatInterval plus at most one raft tick (HeartbeatTimeout/5,
// consensus/raftnode/heartbeat.go): 500 ms under fast, 1.4 s under
// tolerant; a non-voter every HeartbeatInterval + HeartbeatTimeout/10
// (its held heartbeats: 400 ms, 1.2 s), within the window too. But
// the window never outlasts gossip's earliest verdict on a death
// (membership.Timing.EarliestVerdict), so a dead node's last answer is
// always too old by the time gossip calls it dead.
func (p Profile) HeardWindow() time.Duration {
	return min(p.Raft.HeartbeatInterval+p.Raft.HeartbeatTimeout/5, p.Gossip.EarliestVerdict())
}
