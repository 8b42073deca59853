package autopilot

// Why: which nodes vote is decided by a pure function so that every rule
// (targets, grace periods, quorum safety, never touching the leader) is
// table-tested without raft. The leader loop in node calls PlanVoters with
// the raft configuration and the nodes' health, then applies the changes in
// order with ApplyVoterChange (STYLE habit 4).

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// Config tunes PlanVoters.
type Config struct {
	// DeadGrace is how long a voter may be down before it is replaced. Until
	// then it still counts as a voter (a restart does not cause churn).
	DeadGrace time.Duration
	// MaxVoters caps the voter target: 5 (default), 3 or 1.
	MaxVoters int
	// MaxContactAge, when set, is how recent a non-voter's last answer to
	// the leader (NodeHealth.HeardAt) must be for it to be promoted. Why:
	// a promotion counts the new voter in the quorum at once, and a leader
	// that has not heard from a quorum within its lease steps down. On a
	// starved machine (100 agents joining at once on 2 cores) the first
	// promotion, of a node last heard 1.3 s before, took 2 voters' quorum
	// with it: the leader stepped down 0.3 s later and the election took
	// 18 s. A node that answered a moment ago is promoted on a later pass.
	MaxContactAge time.Duration
	// SettleJoins, SettleWindow and SettleMax hold promotions back while
	// nodes join in a burst: while SettleJoins nodes or more were created
	// (admitted) within SettleWindow of Now, or a node of the state is
	// not in the raft configuration yet, and every voter is healthy, no
	// non-voter is promoted, unless the oldest candidate was created
	// SettleMax ago or more. 0 SettleJoins: never held.
	//
	// Why: a promotion puts a node in the quorum at once, and the first
	// one makes a single-voter leader depend on a second node while
	// adding no fault tolerance (two voters survive no failure, as one
	// does). During a burst of joins every node is busy and answers late:
	// with 100 agents joining at once on 2 cores the first promotion
	// came 9 s into the burst, the leader stepped down 0.7 s later for want
	// of its new voter's answer, and the cluster had no leader for 17 s
	// out of its 30 s formation (twice, the second time with 2 voters of
	// 2). Counting creations alone was not enough: the admissions that
	// outran raft trickle in for seconds after the last join, and a
	// promotion 3 s after it lost the lease the same way. A single voter
	// commits the joins on its own disk; the quorum is built once the
	// joins stop and raft has them all, or after SettleMax at the latest. Only
	// while every voter is healthy: a voter that is down is replaced as
	// before, burst or not.
	SettleJoins  int
	SettleWindow time.Duration
	SettleMax    time.Duration
}

// DefaultConfig returns a 10 s grace, at most 5 voters, and promotions
// held while 8 nodes or more joined within 3 s, for 30 s at most.
func DefaultConfig() Config {
	return Config{DeadGrace: 10 * time.Second, MaxVoters: 5,
		SettleJoins: 8, SettleWindow: 3 * time.Second, SettleMax: 30 * time.Second}
}

// joinBurst reports whether nodes joined in a burst that holds the
// promotion of oldest (the first candidate) back: Config.SettleJoins says
// when, or while a node of the state is not in the raft configuration
// yet (its admission waits behind other configuration changes: a burst
// that outran raft). The caller checks that every voter is healthy and
// fit.
func joinBurst(nodes []NodeHealth, servers []raftnode.Server, oldest *apServer, now time.Time, cfg Config) bool {
	if cfg.SettleJoins <= 0 || oldest == nil {
		return false
	}
	if cfg.SettleMax > 0 && now.Sub(oldest.node.CreatedAt) >= cfg.SettleMax {
		return false
	}
	in := make(map[string]bool, len(servers))
	for _, s := range servers {
		in[s.ID] = true
	}
	for _, n := range nodes {
		if !in[n.ID] {
			return true
		}
	}
	recent := 0
	for _, n := range nodes {
		if d := now.Sub(n.CreatedAt); d >= 0 && d < cfg.SettleWindow {
			recent++
		}
	}
	return recent >= cfg.SettleJoins
}

// NodeHealth is what autopilot needs to know about one node of the state.
type NodeHealth struct {
	ID string
	// Ready is true when membership sees the node alive (api.NodeReady).
	Ready bool
	// StatusChangedAt is when Ready last changed (down since, when !Ready).
	StatusChangedAt time.Time
	// CreatedAt orders promotions: the oldest healthy node first.
	CreatedAt time.Time
	// Worker is true for a node with role worker: it never votes.
	Worker bool
	// HeardAt is when the leader last had an answer from the node over
	// raft (zero: never); read against Config.MaxContactAge.
	HeardAt time.Time
	// Unfit is true for a node that says it cannot persist its state (a
	// full disk: node/diskhealth, gossiped): a voter that cannot store
	// raft's log only weakens the quorum, so it is not promoted, and a
	// voting one is swapped for a healthy non-voter when there is one.
	Unfit bool
}

// WithUnfit marks the nodes of unfit (node ID → reason, as gossip says) as
// Unfit and returns nodes.
func WithUnfit(nodes []NodeHealth, unfit map[string]string) []NodeHealth {
	for i := range nodes {
		nodes[i].Unfit = unfit[nodes[i].ID] != ""
	}
	return nodes
}

// NodeHealthFrom converts store nodes; availability is deliberately ignored
// (a drained node still votes), the role is not (a worker never votes).
func NodeHealthFrom(nodes []*api.Node) []NodeHealth {
	out := make([]NodeHealth, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, NodeHealth{ID: n.ID, Ready: n.Status == api.NodeReady,
			StatusChangedAt: n.StatusChangedAt, CreatedAt: n.CreatedAt, Worker: n.Role == api.RoleWorker})
	}
	return out
}

// inContact reports whether the leader heard from n within maxAge of now
// (always, without a bound).
func inContact(n NodeHealth, now time.Time, maxAge time.Duration) bool {
	return maxAge <= 0 || !n.HeardAt.IsZero() && now.Sub(n.HeardAt) < maxAge
}

// VoterAction is one kind of raft configuration change.
type VoterAction string

// Voter actions.
const (
	ActionPromote VoterAction = "promote"
	ActionDemote  VoterAction = "demote"
	ActionRemove  VoterAction = "remove"
	// ActionTransfer hands leadership to another voter: the leader's node
	// became a worker, or it cannot persist (Unfit), and a leader cannot
	// demote itself. ID is the leader; To, when set, is the voter that
	// must receive it (else raft picks the most up-to-date voter).
	ActionTransfer VoterAction = "transfer"
)

// VoterChange is one step of a plan. Addr is the server's raft address
// (needed by raft to promote). To and ToAddr name the receiving voter of
// an ActionTransfer that must not go to just any voter (PlanHandover).
type VoterChange struct {
	Action VoterAction
	ID     string
	Addr   string
	To     string
	ToAddr string
}

// Input is the world as the leader sees it.
type Input struct {
	Servers  []raftnode.Server // current raft configuration
	Nodes    []NodeHealth      // nodes in the state store
	LeaderID string
	Now      time.Time
}

// VoterTarget is the number of voters for a cluster with alive nodes: 5 from
// 5 nodes, 3 from 3, else 1, capped by maxVoters.
func VoterTarget(alive, maxVoters int) int {
	switch {
	case alive >= 5 && maxVoters >= 5:
		return 5
	case alive >= 3 && maxVoters >= 3:
		return 3
	default:
		return 1
	}
}

// health classes of a raft server.
type serverClass int

const (
	classHealthy serverClass = iota
	classSuspect             // down for less than DeadGrace: still counted
	classDead                // down for DeadGrace or longer
)

type apServer struct {
	raftnode.Server
	class   serverClass
	node    NodeHealth
	planned bool
}

// PlanVoters returns the ordered changes that move the raft configuration
// toward the voter target. Rules, in order:
//
//  1. Servers whose node is gone from the state are removed (never the leader).
//  2. The target is VoterTarget of the nodes in the raft configuration that
//     are ready or down for less than DeadGrace ("alive").
//  3. Healthy nonvoters are promoted, oldest first, while alive voters < target;
//     with Config.MaxContactAge, only those the leader heard from within it;
//     none during a burst of joins while every voter is healthy
//     (Config.SettleJoins).
//  4. A voter down for DeadGrace or longer is demoted once enough alive
//     voters replace it (alive voters >= target >= 3); with fewer than 3 alive
//     nodes it stays, so that it counts again the moment it returns.
//  5. While alive voters > target, extra voters are demoted (down ones
//     first, then unfit ones, then the newest), never the leader.
//  6. Workers (role worker) never vote: they are not promoted, do not count
//     toward the target, and a voting worker is demoted (after the
//     promotions that replace it). A leader that is a worker hands
//     leadership over (ActionTransfer, last) once another healthy manager
//     votes; the next leader demotes it.
//  7. An Unfit node (it cannot persist: a full disk) is not promoted,
//     and an Unfit voter other than the leader is demoted once a healthy
//     non-voter has been promoted in its place; it counts as alive.
//  8. An Unfit leader hands leadership to the voter PlanHandover names
//     (ActionTransfer with To, last); the next leader swaps it out by 7.
//
// No demotion or removal is planned that would leave the healthy voters
// without a quorum of the remaining voters. The result is deterministic:
// input order does not matter. It is empty when LeaderID is empty.
func PlanVoters(in Input, cfg Config) []VoterChange {
	if in.LeaderID == "" {
		return nil
	}
	if cfg.MaxVoters <= 0 {
		cfg.MaxVoters = 5
	}
	nodes := make(map[string]NodeHealth, len(in.Nodes))
	for _, n := range in.Nodes {
		nodes[n.ID] = n
	}
	servers := append([]raftnode.Server(nil), in.Servers...)
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })

	var plan []VoterChange
	var members []*apServer
	voters, healthyVoters := 0, 0
	for _, s := range servers {
		n, known := nodes[s.ID]
		if !known && s.ID != in.LeaderID {
			// Removing a voter of unknown health never lowers the healthy count.
			plan = append(plan, VoterChange{Action: ActionRemove, ID: s.ID, Addr: s.Addr})
			continue
		}
		m := &apServer{Server: s, node: n}
		switch {
		case s.ID == in.LeaderID || n.Ready:
			m.class = classHealthy
		case in.Now.Sub(n.StatusChangedAt) < cfg.DeadGrace:
			m.class = classSuspect
		default:
			m.class = classDead
		}
		if s.Voter {
			voters++
			if m.class == classHealthy {
				healthyVoters++
			}
		}
		members = append(members, m)
	}
	quorumSafe := func(v, hv int) bool { return v >= 1 && hv >= v/2+1 }
	// demote plans m's demotion when the voters left keep a quorum of
	// healthy ones, and reports whether it did.
	demote := func(m *apServer) bool {
		hv := healthyVoters
		if m.class == classHealthy {
			hv--
		}
		if !quorumSafe(voters-1, hv) {
			return false
		}
		plan = append(plan, VoterChange{Action: ActionDemote, ID: m.ID, Addr: m.Addr})
		m.Voter = false
		voters--
		healthyVoters = hv
		return true
	}

	alive, aliveVoters := 0, 0
	for _, m := range members {
		if m.class != classDead && !m.node.Worker {
			alive++
			if m.Voter {
				aliveVoters++
			}
		}
	}
	target := VoterTarget(alive, cfg.MaxVoters)

	// 3. Promote healthy nonvoters, oldest first.
	var candidates []*apServer
	for _, m := range members {
		if !m.Voter && m.class == classHealthy && !m.node.Worker && !m.node.Unfit && inContact(m.node, in.Now, cfg.MaxContactAge) {
			candidates = append(candidates, m)
		}
	}
	sort.Slice(candidates, func(i, j int) bool { return olderFirst(candidates[i], candidates[j]) })
	if len(candidates) > 0 && healthyVoters == voters && !unfitVoter(members) && joinBurst(in.Nodes, in.Servers, candidates[0], in.Now, cfg) {
		candidates = nil
	}
	promote := func(m *apServer) {
		plan = append(plan, VoterChange{Action: ActionPromote, ID: m.ID, Addr: m.Addr})
		m.Voter, m.planned = true, true
		voters++
		healthyVoters++
		aliveVoters++
	}
	for len(candidates) > 0 && aliveVoters < target {
		promote(candidates[0])
		candidates = candidates[1:]
	}

	// 7. Swap unfit voters for the healthy non-voters left, oldest first.
	var unfit []*apServer
	for _, m := range members {
		if m.Voter && m.node.Unfit && m.ID != in.LeaderID && m.class != classDead && !m.node.Worker {
			unfit = append(unfit, m)
		}
	}
	sort.Slice(unfit, func(i, j int) bool { return unfit[i].ID < unfit[j].ID })
	for _, m := range unfit {
		if len(candidates) == 0 {
			break
		}
		promote(candidates[0])
		candidates = candidates[1:]
		if demote(m) {
			aliveVoters--
		}
	}

	// 6a. Demote voting workers (never the leader: see 6b), when the
	// remaining voters keep a quorum.
	for _, m := range members {
		if m.Voter && m.node.Worker && m.ID != in.LeaderID {
			demote(m)
		}
	}

	// 4. Demote voters dead past the grace once replaced.
	var dead []*apServer
	for _, m := range members {
		if m.Voter && m.class == classDead && m.ID != in.LeaderID && !m.node.Worker {
			dead = append(dead, m)
		}
	}
	sort.Slice(dead, func(i, j int) bool {
		a, b := dead[i], dead[j]
		if !a.node.StatusChangedAt.Equal(b.node.StatusChangedAt) {
			return a.node.StatusChangedAt.Before(b.node.StatusChangedAt)
		}
		return a.ID < b.ID
	})
	for _, m := range dead {
		if target >= 3 && aliveVoters >= target {
			demote(m) // dead: not among the healthy voters
		}
	}

	// 5. Demote extras: down ones first, then the newest healthy; never the
	// leader, never one promoted by this plan.
	if aliveVoters > target {
		var extras []*apServer
		for _, m := range members {
			if m.Voter && m.class != classDead && m.ID != in.LeaderID && !m.planned && !m.node.Worker {
				extras = append(extras, m)
			}
		}
		sort.Slice(extras, func(i, j int) bool {
			a, b := extras[i], extras[j]
			if a.class != b.class {
				return a.class == classSuspect
			}
			if a.node.Unfit != b.node.Unfit {
				return a.node.Unfit
			}
			return olderFirst(b, a)
		})
		for _, m := range extras {
			if aliveVoters <= target {
				break
			}
			if demote(m) {
				aliveVoters--
			}
		}
	}

	// 8. An unfit leader hands over to a fit voter (PlanHandover).
	if h := PlanHandover(in); h.To.ID != "" {
		lm := leaderMember(members, in.LeaderID)
		return append(plan, VoterChange{Action: ActionTransfer, ID: in.LeaderID, Addr: lm.Addr, To: h.To.ID, ToAddr: h.To.Addr})
	}
	// 6b. A worker leads: hand over to a healthy manager that votes.
	if lm := leaderMember(members, in.LeaderID); lm != nil && lm.node.Worker {
		for _, m := range members {
			if m.Voter && m.ID != in.LeaderID && m.class == classHealthy && !m.node.Worker {
				plan = append(plan, VoterChange{Action: ActionTransfer, ID: in.LeaderID, Addr: lm.Addr})
				break
			}
		}
	}
	return plan
}

// Handover is PlanHandover's decision. To is the voter the leader must
// hand leadership to (zero when none); Stay, when To is zero and the
// leader ought to hand over, says why it stays ("" when it need not).
type Handover struct {
	To   raftnode.Server
	Stay string
}

// PlanHandover decides, from one snapshot, whether the leader must give
// leadership up because it cannot persist its state (its node is Unfit: a
// full disk), and to whom.
//
// Why: a leader whose raft log writes fail fails every write of the
// cluster (hashicorp/raft steps it down on a failed write, but nothing
// keeps it from winning the next election), and one under the disk
// reserve is about to; autopilot only swaps out voters that do not lead.
// The receiver is a voter that is a manager, ready and fit, the oldest
// first (deterministic, and the one most likely to have the full log;
// raft's transfer itself replicates to it until it is caught up, and
// fails after an election timeout if it cannot be). An unfit node never
// receives leadership, and a fit leader never hands over, so a leader
// whose disk recovers keeps leading and one that handed over does not
// take it back. When no voter qualifies the leader stays (a leader that
// cannot write beats none) and Stay says why.
func PlanHandover(in Input) Handover {
	var leader *NodeHealth
	for i := range in.Nodes {
		if in.Nodes[i].ID == in.LeaderID {
			leader = &in.Nodes[i]
		}
	}
	if in.LeaderID == "" || leader == nil || !leader.Unfit {
		return Handover{}
	}
	nodes := make(map[string]NodeHealth, len(in.Nodes))
	for _, n := range in.Nodes {
		nodes[n.ID] = n
	}
	var best *raftnode.Server
	for i := range in.Servers {
		s := &in.Servers[i]
		n, ok := nodes[s.ID]
		if !ok || !s.Voter || s.ID == in.LeaderID || !n.Ready || n.Unfit || n.Worker {
			continue
		}
		if best == nil {
			best = s
			continue
		}
		b := nodes[best.ID]
		if n.CreatedAt.Before(b.CreatedAt) || (n.CreatedAt.Equal(b.CreatedAt) && s.ID < best.ID) {
			best = s
		}
	}
	if best == nil {
		return Handover{Stay: "no other voter is ready with a disk that can persist"}
	}
	return Handover{To: *best}
}

func leaderMember(members []*apServer, id string) *apServer {
	for _, m := range members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// unfitVoter reports whether a voter of members cannot persist its state.
func unfitVoter(members []*apServer) bool {
	for _, m := range members {
		if m.Voter && m.node.Unfit {
			return true
		}
	}
	return false
}

func olderFirst(a, b *apServer) bool {
	if !a.node.CreatedAt.Equal(b.node.CreatedAt) {
		return a.node.CreatedAt.Before(b.node.CreatedAt)
	}
	return a.ID < b.ID
}

// ApplyVoterChange carries out one planned change on r's raft configuration
// (leader only). node/leaderloop then records the new role with SetNodeVoter
// (its VoterRecords), which the promoted/demoted events read.
func ApplyVoterChange(ctx context.Context, r *raftnode.Raft, c VoterChange) error {
	switch c.Action {
	case ActionPromote:
		return r.AddVoter(ctx, c.ID, c.Addr)
	case ActionDemote:
		return r.DemoteVoter(ctx, c.ID)
	case ActionRemove:
		return r.RemoveServer(ctx, c.ID)
	case ActionTransfer:
		if c.To != "" {
			return r.TransferLeadershipTo(ctx, c.To, c.ToAddr)
		}
		return r.TransferLeadership(ctx)
	default:
		return fmt.Errorf("voter change %q for %s: %w", c.Action, c.ID, consensus.ErrInvalid)
	}
}
