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

// Profile is an agent's failure detection (`shoal agent --gossip-profile`):
// raft's heartbeats, whose silence finds a dead host (the leader's verdict
// on a node, node/leaderloop's silence.go, and a follower's watch on its
// leader, raftnode's watch.go), and gossip's probes, the second opinion.
//
// Why raft first: on an idle cluster heartbeats and probes are most of what
// an agent wakes up for, and each wake-up costs ~0.1–0.2 ms of CPU on small
// VMs (membership.go). Raft's heartbeats must flow anyway (they prove the
// leader alive and carry its term), over a connection the leader already
// holds to every node; reading their silence costs nothing more. Gossip
// found a dead host as fast only with probes three times a second on
// every node; it now probes slowly under both profiles, and the profiles
// differ in how often raft's heartbeats go out and how long a silence
// counts as a death.
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
	// SharedOrigin puts the agent on the cluster-wide beat grid
	// (resync.ShareOrigin): its loops, raft's heartbeats and gossip's
	// probes on the same beats as every other agent's. Under fast, for
	// agents one per host; tolerant, for many agents sharing a machine,
	// keeps a phase of its own per agent (node/resync says why, with the
	// 100-agent figures).
	SharedOrigin bool
}

// Default names the profile an agent runs unless told otherwise.
const Default = "fast"

// All are the failure-detection profiles an agent can be started with.
//
//   - fast: raft heartbeats every 300 ms; a dead host is found in under a
//     second (silence of 0.9 s, up to 10 nodes), its backends leave every
//     load balancer within about a second, and followers campaign after
//     0.6 s without their leader. Costs the most when idle. One P. On
//     the cluster-wide beat grid, gossip's probes on raft's beats.
//   - tolerant: for agents that share starved CPUs (dense test rigs,
//     oversubscribed VMs, 100 agents on 2 cores) and for anyone who would
//     rather have an idle agent near-free: raft heartbeats once a second, a
//     dead host is found in under 2 s (silence of 1.8 s up to 10 nodes,
//     3.6 s at 100), followers campaign after 1.6 s without their leader,
//     and the agent runs on one P.
var All = map[string]Profile{
	Default:    {Gossip: membership.DefaultTiming, Raft: raftnode.DefaultTiming, Procs: 1, Silence: 900 * time.Millisecond, SharedOrigin: true},
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
// scales its suspicion). 0.9 s under fast, 2.25 non-voter heartbeat
// intervals (400 ms): a death is marked 0.75 s after it on average, what
// gossip's 300 ms probes used to take, and a dead backend leaves the load
// balancers within the second. 1.8 s under tolerant, 1.5 non-voter
// intervals (1.2 s): about 1.8 s after a death (node-down bench, 5 kills:
// 1.74–1.94 s) where gossip's 800 ms probes took about 2.2 s (1.74–2.84).
func (p Profile) SilenceWindow() time.Duration { return p.Silence }

// GossipOnBeats reports whether gossip's probe and gossip intervals are
// whole numbers of raft's heartbeat interval, so that gossip started on a
// beat keeps ticking on beats (fast: 900 ms and 1.8 s on 300 ms beats).
// The agent starts gossip on a beat only then: under tolerant (800 ms
// probes, 1 s beats) waiting for one would align nothing.
func (p Profile) GossipOnBeats() bool {
	b := p.Raft.HeartbeatInterval
	return b > 0 && p.Gossip.ProbeInterval%b == 0 && p.Gossip.GossipInterval%b == 0
}

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

// PromoteContact is how recent a non-voter's last raft answer must be for
// autopilot to promote it (autopilot.Config.MaxContactAge): half the
// leader's lease. A promotion counts the new voter in the quorum at once,
// so it must answer again before the lease runs out or the leader steps
// down. A non-voter answers every 400 ms under fast and 1.2 s under
// tolerant (HeardWindow), so a healthy one qualifies on most passes.
func (p Profile) PromoteContact() time.Duration {
	return p.Raft.LeaderLeaseTimeout / 2
}
