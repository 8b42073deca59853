package node

// Leader work runs in one loop per term, started from Raft's leadership
// notifications after a barrier (so the local state holds every committed
// entry), and stopped when leadership is lost. It reads snapshots of the
// state and proposes commands; it never blocks Raft's callbacks.
//
//   - node status: gossip's verdict (alive/dead) becomes ready/down in Raft;
//   - admission: nodes in the state but missing from the Raft configuration
//     (a returning node after force-new-cluster, a join interrupted by a
//     leader change) are added back as non-voters;
//   - autopilot: keeps 3 (or 5) voters among healthy nodes;
//   - scheduling: services → tasks (scheduler.go).

import (
	"context"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// leadershipRecheck is how often leadershipLoop re-reads raft's state
// without a notification.
const leadershipRecheck = 5 * time.Second

// statusGrace is how long a new leader trusts gossip to converge before it
// marks nodes it has never seen as down.
const statusGrace = 3 * time.Second

func (a *Agent) leadershipLoop(ctx context.Context, cl *cluster) {
	var (
		lcancel context.CancelFunc
		lwg     sync.WaitGroup
	)
	stop := func() {
		if lcancel != nil {
			lcancel()
			lwg.Wait()
			lcancel = nil
		}
	}
	defer stop()
	start := func() {
		if lcancel != nil {
			return
		}
		var lctx context.Context
		lctx, lcancel = context.WithCancel(ctx)
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			a.leaderWork(lctx, cl)
		}()
	}
	if cl.raft.IsLeader() {
		start()
	}
	memberCh, cancelMembers := cl.members.Subscribe()
	defer cancelMembers()
	// raft's leadership channel keeps the newest transition when one is
	// missed, so the check below is only a backstop; once a second it was
	// one of an idle follower's steady wake-ups (issue 10).
	tick := time.NewTicker(leadershipRecheck)
	defer tick.Stop()
	for {
		a.expediteElection(cl)
		select {
		case <-ctx.Done():
			return
		case isLeader := <-cl.raft.LeadershipCh():
			if isLeader {
				start()
			} else {
				stop()
			}
		case <-memberCh:
		case <-tick.C:
			// Belt and braces: NotifyCh may drop a transition under load.
			if cl.raft.IsLeader() {
				start()
			} else {
				stop()
			}
		}
	}
}

// expediteElection lets gossip's verdict start an election: while this
// node is not the leader and knows no leader, or gossip has declared the
// leader it knows dead, Raft's long heartbeat timeout (which keeps a
// starved leader in office) is cut to the lease (consensus.Raft.
// ExpediteElection). A leader gossip has never seen (it just joined) is
// not suspected.
func (a *Agent) expediteElection(cl *cluster) {
	if err := cl.raft.ExpediteElection(suspectLeader(cl.raft.IsLeader(), leaderID(cl), cl.members.AliveSet(), cl.members.EverSeen)); err != nil {
		a.log.Debug("raft timeouts", "err", err)
	}
}

func leaderID(cl *cluster) string {
	id, _ := cl.raft.Leader()
	return id
}

// suspectLeader is the pure half of expediteElection.
func suspectLeader(self bool, leader string, alive map[string]memberMeta, everSeen func(string) bool) bool {
	if self {
		return false
	}
	if leader == "" {
		return true
	}
	_, ok := alive[leader]
	return !ok && everSeen(leader)
}

func (a *Agent) leaderWork(ctx context.Context, cl *cluster) {
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := cl.raft.Barrier(bctx)
	cancel()
	if err != nil {
		a.log.Warn("leader barrier failed", "err", err)
		return
	}
	since := time.Now()
	a.log.Info("leading the cluster")

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.schedulerLoop(ctx, cl)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.autoscaleLoop(ctx, cl)
	}()

	// Membership events and state changes (a join, a status change) wake
	// the loop at once; the ticker only catches grace periods expiring
	// (statusGrace, RestartGrace, the autopilot's DeadGrace), which a
	// second's lateness does not hurt. Passes are pure reads unless
	// something must change, but each reads every node and the Raft
	// configuration, so they are spaced by at least minPass under a storm
	// of task reports and run once a second when idle.
	const (
		minPass  = 100 * time.Millisecond
		idlePass = time.Second
	)
	storeCh, cancel := cl.store.Subscribe()
	defer cancel()
	memberCh, cancelMembers := cl.members.Subscribe()
	defer cancelMembers()
	tick := time.NewTicker(idlePass)
	defer tick.Stop()
	for {
		passed := time.Now()
		a.markNodeStatus(ctx, cl, since)
		a.admitMissing(ctx, cl)
		a.autopilot(ctx, cl)
		a.rotateGossipKeys(ctx, cl)
		select {
		case <-ctx.Done():
			return
		case <-memberCh:
		case <-storeCh:
		case <-tick.C:
		}
		// The spacing is waited out after the wake-up, not before it: an
		// idle leader's ticker comes long after minPass and costs one
		// wake-up, not two.
		if rest := minPass - time.Since(passed); rest > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(rest):
			}
		}
	}
}

// markNodeStatus writes gossip's verdict for every node whose recorded
// status differs, in one command.
func (a *Agent) markNodeStatus(ctx context.Context, cl *cluster, leaderSince time.Time) {
	alive := cl.members.AliveSet()
	now := time.Now().UTC()
	var changes []consensus.NodeStatus
	for _, n := range cl.store.Nodes() {
		want := api.NodeDown
		if _, ok := alive[n.ID]; ok || n.ID == a.id.NodeID {
			want = api.NodeReady
		}
		if want == api.NodeDown && time.Since(leaderSince) < statusGrace && !cl.members.EverSeen(n.ID) {
			continue
		}
		if want == api.NodeDown && n.Status == api.NodeReady && cl.members.Restarting(n.ID, a.cfg.RestartGrace) {
			continue // an agent restart or upgrade: its tasks keep running
		}
		if n.Status != want {
			changes = append(changes, consensus.NodeStatus{ID: n.ID, Status: want, At: now})
		}
	}
	if len(changes) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.raft.Apply(wctx, &consensus.SetNodeStatus{Statuses: changes}); err != nil {
		a.log.Warn("record node status", "err", err)
		return
	}
	for _, c := range changes {
		a.log.Info("node status changed", "node_id", shortID(c.ID), "status", c.Status)
	}
}

// admitMissing adds nodes of the state that are alive but absent from the
// Raft configuration as non-voters.
func (a *Agent) admitMissing(ctx context.Context, cl *cluster) {
	servers, err := cl.raft.Servers()
	if err != nil {
		return
	}
	in := map[string]bool{}
	for _, s := range servers {
		in[s.ID] = true
	}
	alive := cl.members.AliveSet()
	for _, n := range cl.store.Nodes() {
		if in[n.ID] {
			continue
		}
		if _, ok := alive[n.ID]; !ok {
			continue
		}
		if _, busy := cl.removing.Load(n.ID); busy {
			continue
		}
		addr := joinHostPort(n.Addr, n.ClusterPort)
		if err := cl.raft.AddNonvoter(ctx, n.ID, addr); err != nil {
			a.log.Warn("re-admit node to raft", "node_id", shortID(n.ID), "err", err)
			continue
		}
		a.log.Info("re-admitted node to raft as non-voter", "node_id", shortID(n.ID))
	}
}

// autopilot applies consensus.PlanVoters to the Raft configuration, one
// change at a time, stopping at the first failure (the next round replans).
func (a *Agent) autopilot(ctx context.Context, cl *cluster) {
	servers, err := cl.raft.Servers()
	if err != nil {
		return
	}
	leader, _ := cl.raft.Leader()
	cfg := consensus.DefaultAutopilotConfig()
	cfg.DeadGrace = a.cfg.DeadVoterGrace
	changes := consensus.PlanVoters(consensus.AutopilotInput{
		Servers:  servers,
		Nodes:    consensus.NodeHealthFrom(cl.store.Nodes()),
		LeaderID: leader,
		Now:      time.Now().UTC(),
	}, cfg)
	for _, c := range changes {
		if err := cl.raft.ApplyVoterChange(ctx, c); err != nil {
			a.log.Warn("autopilot change failed", "action", c.Action, "node_id", shortID(c.ID), "err", err)
			return
		}
		a.log.Info("autopilot", "action", c.Action, "node_id", shortID(c.ID))
	}
}
