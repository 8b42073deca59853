// Package leaderloop is what only the leader runs: one loop per term,
// started from Raft's leadership notifications, that writes gossip's
// verdict on nodes into Raft, re-admits nodes missing from the Raft
// configuration, keeps the voters (autopilot), schedules and autoscales.
// It holds the cluster's parts it needs in Config and never imports node.
package leaderloop

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
//   - scheduling: services → tasks (schedule.go);
//   - autoscaling: usage polled from the nodes → replica counts (autoscale.go);
//   - the gossip key rotation's leader step (node's revocation.go, through
//     Config.RotateGossipKeys).

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/autopilot"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/resync"
)

// Config is what the leader's loops need of the cluster instance they run
// in. Every field is required; none is changed after New.
type Config struct {
	NodeID  string                 // this node
	Store   *consensus.Store       // the local replica
	Raft    *raftnode.Raft         // proposals, configuration changes, leadership
	Members *membership.Membership // gossip's verdicts
	Log     *slog.Logger
	Metrics *metrics.Set // the scheduler's plan timing

	// RestartGrace is how long a node that announced a restart is not
	// marked down; DeadVoterGrace how long autopilot waits before it
	// replaces a dead voter (node.Config).
	RestartGrace   time.Duration
	DeadVoterGrace time.Duration
	// HeardWindow is how recent raft's last answer from a node gossip
	// calls dead must be to keep it ready (HeardHolds); node derives it
	// from the agent's profile (node/profile: profile.Profile.HeardWindow). 0 is
	// DefaultHeardWindow.
	HeardWindow time.Duration
	// SilenceWindow is how long the leader waits, after raft's last answer
	// from a ready node, before it marks the node down without waiting for
	// gossip (Silence); 0 turns raft's verdict off. BeatInterval is the grid
	// of raft's heartbeats (raftnode.Timing.HeartbeatInterval), on which the
	// leader looks for overdue answers at no wake-up of its own.
	SilenceWindow time.Duration
	BeatInterval  time.Duration
	// AdmitWait is how long a join waits for its raft admission before it
	// answers (node/joining's AdmitWait, which node wires in); 0 is
	// DefaultAdmitWait. The leader's grace for a joiner's gossip and its
	// own re-admissions count from it (joins.go).
	AdmitWait time.Duration
	// PromoteContact is how recent raft's last answer from a non-voter
	// must be for autopilot to promote it (autopilot.Config.MaxContactAge);
	// 0 promotes without looking.
	PromoteContact time.Duration

	// Removing reports whether the leader is removing the node (between
	// its removal from Raft and from the state): it is not re-admitted.
	Removing func(nodeID string) bool
	// RotateGossipKeys takes the gossip key rotation's next step, if any;
	// it runs on every pass and must not block for long.
	RotateGossipKeys func(ctx context.Context)
	// LocalUsage is this node's usage report; Usage asks the node whose
	// cluster port is addr for its report (RPC usage).
	LocalUsage func() autoscale.Report
	Usage      func(ctx context.Context, addr string) (autoscale.Report, error)
}

// Loop runs the leader's work while this node leads.
type Loop struct {
	cfg Config
	log *slog.Logger
	// stay is why an unfit leader last stayed (autopilot.PlanHandover),
	// so that the warning is logged once per change, not every pass.
	// Only the leader's pass (one goroutine) reads and writes it.
	stay string
	// deferred counts the autopilot passes in a row that held a promotion
	// back for want of a recent raft answer (autopilot.Config.MaxContactAge);
	// the first promoteRetries of them pass again after promoteRetry
	// instead of on the next event.
	deferred int
}

// promoteRetry is how soon the leader passes again after autopilot held a
// promotion back: a healthy non-voter answers every 400 ms (fast) to 1.2 s
// (tolerant), and a pass right after an answer promotes it. After
// promoteRetries such passes (a node gossip sees but raft cannot reach)
// the loop's 1 s tick is enough.
const (
	promoteRetry   = 150 * time.Millisecond
	promoteRetries = 10
)

// New returns the loop of one cluster instance; Run starts it.
func New(cfg Config) *Loop { return &Loop{cfg: cfg, log: cfg.Log} }

// leadershipRecheck is how often leadershipLoop re-reads raft's state
// without a notification.
const leadershipRecheck = 5 * time.Second

// DefaultHeardWindow: a ready node gossip calls dead is kept ready while
// the leader's raft heard from it this recently (Raft.HeardFrom). This is
// the window of the fast profile; profile.Profile.HeardWindow gives each
// profile's. A live agent answers a real heartbeat every HeartbeatInterval
// (300 ms), so one whose
// UDP probes are lost or late (a saturated host, 100 agents on two cores,
// a filter that drops UDP) still proves it is there over its cluster port;
// a dead one answered nothing since it died, and gossip's verdict comes at
// the earliest ~0.65 s after a death (probe, timeout, suspicion), past the
// window, so a real death is never held back. The idle pass (1 s) asks
// again. It holds for raftHeardHold at most.
const DefaultHeardWindow = 500 * time.Millisecond

// raftHeardHold bounds that: gossip's false verdicts on a busy host are
// flaps (the node refutes and is alive again within seconds), while a node
// whose gossip stays cut (a firewall on 7946, a broken UDP path) is down
// for the cluster's purposes — other nodes' balancers and overlays follow
// gossip — and is marked so after this long even though raft reaches it.
const raftHeardHold = 10 * time.Second

// HeardHolds reports whether raft's last answer from a node (heardAt, zero
// if none) keeps it ready at now although gossip has counted it dead since
// deadSince: the answer is within window, and gossip's verdict is younger
// than raftHeardHold.
func HeardHolds(heardAt, deadSince, now time.Time, window time.Duration) bool {
	return !heardAt.IsZero() && now.Sub(heardAt) < window && now.Sub(deadSince) < raftHeardHold
}

// seedAge bounds how old the previous leader's last heartbeat may be for a
// new leader to take it as that node's last answer (silence.go): an
// election won long after the old leader was lost says nothing about it.
const seedAge = 30 * time.Second

// DefaultAdmitWait is Config.AdmitWait's default.
const DefaultAdmitWait = 3 * time.Second

// statusGrace is how long a new leader trusts gossip to converge before it
// marks nodes it has never seen as down.
const statusGrace = 3 * time.Second

// Run follows this node's leadership until ctx ends: it runs the leader's
// work (after a barrier) for as long as this node leads, and while it does
// not, lets gossip's verdict on the leader start an election early. It
// blocks; on return the leader's work has stopped.
func (l *Loop) Run(ctx context.Context) {
	cl := l.cfg
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
			l.leaderWork(lctx)
		}()
	}
	if cl.Raft.IsLeader() {
		start()
	}
	memberCh, cancelMembers := cl.Members.Subscribe()
	defer cancelMembers()
	// raft's leadership channel keeps the newest transition when one is
	// missed, so the check below is only a backstop; once a second it was
	// one of an idle follower's steady wake-ups (issue 10).
	tick := resync.NewTicker(leadershipRecheck)
	defer tick.Stop()
	for {
		l.expediteElection()
		select {
		case <-ctx.Done():
			return
		case isLeader := <-cl.Raft.LeadershipCh():
			if isLeader {
				start()
			} else {
				stop()
			}
		case <-memberCh:
		case <-cl.Raft.SilenceCh():
		case <-tick.C:
			// Belt and braces: NotifyCh may drop a transition under load.
			if cl.Raft.IsLeader() {
				start()
			} else {
				stop()
			}
		}
	}
}

// expediteElection lets gossip's verdict, or raft's own silence, start an
// election: while this node is not the leader and knows no leader, or
// gossip has declared the leader it knows dead, or it has heard nothing from
// its leader for the profile's silence (raftnode's leader watch), Raft's
// long heartbeat timeout (which keeps a starved leader in office) is cut to
// the lease (raftnode.Raft.ExpediteElection). A leader gossip has never
// seen (it just joined) is not suspected on gossip's word.
func (l *Loop) expediteElection() {
	cl := l.cfg
	leader, _ := cl.Raft.Leader()
	if err := cl.Raft.ExpediteElection(SuspectLeader(cl.Raft.IsLeader(), leader, cl.Raft.LeaderSilent(), cl.Members.AliveSet(), cl.Members.EverSeen)); err != nil {
		l.log.Debug("raft timeouts", "err", err)
	}
}

// SuspectLeader is the pure half of expediteElection: whether this node
// (self: it leads) should cut Raft's heartbeat timeout to the lease, given
// the leader it knows ("" for none), whether raft has been silent on it
// (silent), gossip's alive set and whether gossip ever saw a node.
func SuspectLeader(self bool, leader string, silent bool, alive map[string]membership.Meta, everSeen func(string) bool) bool {
	if self {
		return false
	}
	if leader == "" || silent {
		return true
	}
	_, ok := alive[leader]
	return !ok && everSeen(leader)
}

func (l *Loop) leaderWork(ctx context.Context) {
	cl := l.cfg
	if err := barrierUntilDone(ctx, cl.Raft.Barrier, leaderBarrierTimeout, leaderBarrierRetry, func(err error) {
		l.log.Warn("leader barrier failed; trying again", "err", err)
	}); err != nil {
		return // ctx ended: no longer the leader, or shutting down
	}
	since := time.Now()
	l.log.Info("leading the cluster")
	// deadSince: when gossip first counted each node dead this term (the
	// bound of raftHeardHold).
	deadSince := map[string]time.Time{}
	sil := newSilence(cl.SilenceWindow)
	joined := newJoins(cmp.Or(cl.AdmitWait, DefaultAdmitWait))
	if prev, at := cl.Raft.LostLeader(); prev != "" && prev != cl.NodeID && since.Sub(at) < seedAge {
		sil.seed(prev, at)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.schedulerLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.autoscaleLoop(ctx)
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
	storeCh, cancel := cl.Store.Subscribe()
	defer cancel()
	memberCh, cancelMembers := cl.Members.Subscribe()
	defer cancelMembers()
	tick := resync.NewTicker(idlePass)
	defer tick.Stop()
	// Raft's verdict (silence.go): overdue answers are looked for on raft's
	// beats, and a node that missed one gets a timer for when its window
	// ends.
	var beatC <-chan time.Time
	if cl.SilenceWindow > 0 && cl.BeatInterval > 0 {
		beat := resync.NewTicker(cl.BeatInterval)
		defer beat.Stop()
		beatC = beat.C
	}
	silenceTimer := time.NewTimer(time.Hour)
	silenceTimer.Stop()
	defer silenceTimer.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		passed := time.Now()
		l.held(ctx, func(ctx context.Context) {
			l.markNodeStatus(ctx, since, deadSince, sil, joined)
			l.admitMissing(ctx, joined)
			l.autopilot(ctx)
			cl.RotateGossipKeys(ctx)
		})
		if l.deferred > 0 && l.deferred <= promoteRetries {
			retry.Reset(promoteRetry)
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		case <-memberCh:
		case <-storeCh:
		case <-tick.C:
		case <-silenceTimer.C:
		case now := <-beatC:
			due, ok := sil.due(cl.Raft.HeardFrom, now, cl.BeatInterval)
			if !ok {
				goto wait
			}
			if wait := time.Until(due); wait > 0 {
				silenceTimer.Reset(wait)
				goto wait
			}
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

// held runs pass with the proposal gate held shared
// (raftnode.Raft.HoldProposals): a snapshot restore waits for the pass
// to end, and a pass waits for a restore under way, so what a pass
// proposes follows from the state it read, never from the state before a
// restore landing on the restored one (or erased by it). A pass whose
// wait ends with ctx does nothing.
func (l *Loop) held(ctx context.Context, pass func(ctx context.Context)) {
	hctx, release, err := l.cfg.Raft.HoldProposals(ctx)
	if err != nil {
		return
	}
	defer release()
	pass(hctx)
}

// markNodeStatus writes gossip's and raft's verdicts for every node whose
// recorded status differs, in one command.
func (l *Loop) markNodeStatus(ctx context.Context, leaderSince time.Time, deadSince map[string]time.Time, sil *silence, joined *joins) {
	cl := l.cfg
	now := time.Now()
	alive := cl.Members.AliveSet()
	nodes := cl.Store.Nodes()
	statuses := make(map[string]string, len(nodes))
	for _, n := range nodes {
		statuses[n.ID] = n.Status
		if _, ok := alive[n.ID]; ok {
			delete(deadSince, n.ID)
		} else if _, ok := deadSince[n.ID]; !ok {
			deadSince[n.ID] = now
		}
	}
	joined.observe(nodes, alive, now)
	if servers, err := cl.Raft.Servers(); err == nil {
		members := make(map[string]bool, len(servers))
		for _, s := range servers {
			members[s.ID] = true
		}
		sil.observe(statuses, members, now)
	} else {
		sil.observe(statuses, sil.members, now)
	}
	heard := func(id string) bool {
		at := cl.Raft.HeardFrom(id)
		return HeardHolds(at, deadSince[id], now, cmp.Or(cl.HeardWindow, DefaultHeardWindow))
	}
	if cl.SilenceWindow > 0 {
		sil.window = SilenceWindowFor(cl.SilenceWindow, len(nodes))
	}
	changes := StatusChanges(nodes, cl.NodeID, alive, Opinions{
		InGrace:    time.Since(leaderSince) < statusGrace,
		EverSeen:   cl.Members.EverSeen,
		Restarting: func(id string) bool { return cl.Members.Restarting(id, cl.RestartGrace) },
		Joining:    func(id string) bool { return joined.joining(id, now) },
		Heard:      heard,
		Silent:     func(id string) bool { return sil.silent(id, cl.Raft.HeardFrom, now) },
		Unanswered: func(id string) bool { return sil.unanswered(id, cl.Raft.HeardFrom(id)) },
	}, now.UTC())
	if len(changes) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.Raft.Apply(wctx, &command.SetNodeStatus{Statuses: changes}); err != nil {
		l.log.Warn("record node status", "err", err)
		return
	}
	for _, c := range changes {
		if c.Status == api.NodeReady {
			// Ready from this write on: raft's answers to the entry that
			// carries it already count (silence.go).
			sil.readySince[c.ID] = now
			delete(sil.silenced, c.ID)
		}
		if c.Status == api.NodeDown && sil.silent(c.ID, cl.Raft.HeardFrom, now) {
			sil.silenced[c.ID] = now
			l.log.Info("node status changed", "node_id", api.ShortID(c.ID), "status", c.Status, "reason", "raft heard nothing",
				"silent_for", now.Sub(sil.heard(c.ID, cl.Raft.HeardFrom(c.ID))).Round(time.Millisecond))
			continue
		}
		l.log.Info("node status changed", "node_id", api.ShortID(c.ID), "status", c.Status)
	}
}

// Opinions is what StatusChanges weighs besides gossip's alive set. A nil
// func says no.
type Opinions struct {
	// InGrace: the new leader is in its grace, in which a node gossip never
	// saw (EverSeen) is not marked down.
	InGrace  bool
	EverSeen func(id string) bool
	// Restarting: the node announced an agent restart.
	Restarting func(id string) bool
	// Joining: the node's record appeared this term less than joinGrace
	// ago and gossip has not seen it alive yet (joins.go).
	Joining func(id string) bool
	// Heard: raft heard from the node within the heard window.
	Heard func(id string) bool
	// Silent: raft's verdict on a ready node (silence.go): it answered
	// since it was seen ready and has been silent for the window.
	Silent func(id string) bool
	// Unanswered: the node was marked down for silence and raft has not
	// heard from it since.
	Unanswered func(id string) bool
}

func ask(f func(string) bool, id string) bool { return f != nil && f(id) }

// StatusChanges is the pure half of markNodeStatus: the status the
// verdicts give each node of nodes whose recorded status differs. self
// (this leader) is ready. A node gossip does not count alive is down, and
// so is a ready node raft has gone silent on (o.Silent) and a node down for
// silence that raft has not heard since (o.Unanswered), whatever gossip
// says; except, while the new leader is in its grace, one gossip never
// saw, a ready node that just joined (o.Joining), a ready node that
// announced a restart, and a ready node raft heard
// from within the heard window (o.Heard: gossip's probes failed, the agent
// did not).
func StatusChanges(nodes []*api.Node, self string, alive map[string]membership.Meta, o Opinions, now time.Time) []command.NodeStatus {
	var changes []command.NodeStatus
	for _, n := range nodes {
		want := api.NodeDown
		if _, ok := alive[n.ID]; ok || n.ID == self {
			want = api.NodeReady
		}
		if want == api.NodeReady && n.ID != self {
			switch {
			case n.Status == api.NodeReady && ask(o.Silent, n.ID):
				want = api.NodeDown
			case n.Status == api.NodeDown && ask(o.Unanswered, n.ID):
				want = api.NodeDown
			}
		}
		if want == api.NodeDown && o.InGrace && !ask(o.EverSeen, n.ID) {
			continue
		}
		if want == api.NodeDown && n.Status == api.NodeReady && ask(o.Joining, n.ID) {
			continue // just joined: its gossip is on the way
		}
		if want == api.NodeDown && n.Status == api.NodeReady && ask(o.Restarting, n.ID) {
			continue // an agent restart or upgrade: its tasks keep running
		}
		if want == api.NodeDown && n.Status == api.NodeReady && ask(o.Heard, n.ID) {
			continue // raft reached it a moment ago: gossip's probes were lost, not the node
		}
		if n.Status != want {
			changes = append(changes, command.NodeStatus{ID: n.ID, Status: want, At: now})
		}
	}
	return changes
}

// admitMissing queues the addition of nodes of the state that are alive
// but absent from the Raft configuration as non-voters (raftnode's admit
// queue: raft takes one configuration change at a time, and the queue
// hands them over back to back without holding this pass).
func (l *Loop) admitMissing(ctx context.Context, joined *joins) {
	cl := l.cfg
	servers, err := cl.Raft.Servers()
	if err != nil {
		return
	}
	in := map[string]bool{}
	for _, s := range servers {
		in[s.ID] = true
	}
	now := time.Now()
	alive := cl.Members.AliveSet()
	for _, n := range cl.Store.Nodes() {
		if in[n.ID] {
			continue
		}
		if _, ok := alive[n.ID]; !ok {
			continue
		}
		if cl.Removing(n.ID) || joined.admitting(n.ID, now) || cl.Raft.NonvoterQueued(n.ID) {
			continue // a join's addition is under way
		}
		id := api.ShortID(n.ID)
		done := cl.Raft.QueueNonvoter(n.ID, joinHostPort(n.Addr, n.ClusterPort))
		go func() {
			select {
			case err := <-done:
				if err != nil {
					l.log.Warn("re-admit node to raft", "node_id", id, "err", err)
					return
				}
				l.log.Info("re-admitted node to raft as non-voter", "node_id", id)
			case <-ctx.Done():
			}
		}()
	}
}

// autopilot applies autopilot.PlanVoters to the Raft configuration, one
// change at a time, stopping at the first failure (the next round replans),
// then records the configuration's voters in the nodes (recordVoters).
func (l *Loop) autopilot(ctx context.Context) {
	cl := l.cfg
	servers, err := cl.Raft.Servers()
	if err != nil {
		return
	}
	changed := false
	defer func() {
		if changed { // the configuration read above is out of date
			if servers, err = cl.Raft.Servers(); err != nil {
				return
			}
		}
		l.recordVoters(ctx, servers)
	}()
	leader, _ := cl.Raft.Leader()
	cfg := autopilot.DefaultConfig()
	cfg.DeadGrace = cl.DeadVoterGrace
	if cl.Raft.TracksContact() {
		cfg.MaxContactAge = cl.PromoteContact
	}
	nodes := autopilot.WithUnfit(autopilot.NodeHealthFrom(cl.Store.Nodes()), cl.Members.Unfit())
	for i := range nodes {
		nodes[i].HeardAt = cl.Raft.HeardFrom(nodes[i].ID)
	}
	in := autopilot.Input{
		Servers:  servers,
		Nodes:    nodes,
		LeaderID: leader,
		Now:      time.Now().UTC(),
	}
	if h := autopilot.PlanHandover(in); h.Stay != l.stay {
		if h.Stay != "" {
			l.log.Warn("this leader cannot persist its state but keeps leading", "reason", h.Stay)
		}
		l.stay = h.Stay
	}
	changes := autopilot.PlanVoters(in, cfg)
	held := false
	if cfg.MaxContactAge > 0 && promotes(changes) == 0 {
		loose := cfg
		loose.MaxContactAge = 0
		held = promotes(autopilot.PlanVoters(in, loose)) > 0
	}
	if held {
		l.deferred++
	} else {
		l.deferred = 0
	}
	for _, c := range changes {
		if c.Action == autopilot.ActionTransfer && c.To != "" {
			l.log.Warn("this leader cannot persist its state: handing leadership over", "to", api.ShortID(c.To))
		}
		if err := autopilot.ApplyVoterChange(ctx, cl.Raft, c); err != nil {
			if c.Action == autopilot.ActionTransfer && !cl.Raft.IsLeader() {
				// The transfer's wait ends with the leader's work, whose
				// context is cancelled once leadership has moved: done.
				l.log.Info("autopilot: leadership handed over", "node_id", api.ShortID(c.ID))
				return
			}
			l.log.Warn("autopilot change failed", "action", c.Action, "node_id", api.ShortID(c.ID), "err", err)
			return
		}
		changed = true
		l.log.Info("autopilot", "action", c.Action, "node_id", api.ShortID(c.ID))
	}
}

// promotes counts the promotions of a plan.
func promotes(plan []autopilot.VoterChange) int {
	n := 0
	for _, c := range plan {
		if c.Action == autopilot.ActionPromote {
			n++
		}
	}
	return n
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

const (
	// leaderBarrierTimeout bounds one try of the barrier a new leader
	// passes before its work (every entry of earlier terms applied).
	leaderBarrierTimeout = 10 * time.Second
	// leaderBarrierRetry is the pause before the next try.
	leaderBarrierRetry = 200 * time.Millisecond
)

// barrierUntilDone runs barrier (with a timeout per try) until it succeeds
// or ctx ends, pausing retry between tries and reporting each failure to
// failed; it returns nil once a barrier passed, else ctx's error.
//
// Why retry rather than give up: Run starts the leader's work once per
// leadership and stops it only on a step-down, so work that returned early
// stayed absent for the rest of the term: no scheduling, no node-down
// marking, no autopilot. A barrier fails when leadership flipped (lost and
// won again before Run saw the step-down: raft's leadership channel keeps
// only the newest value) or when a lagging new leader needs longer than a
// try to apply its backlog. In both cases the leader is still the leader,
// and the next try passes; when it is not, Run's stop ends ctx.
func barrierUntilDone(ctx context.Context, barrier func(context.Context) error, timeout, retry time.Duration, failed func(error)) error {
	for {
		bctx, cancel := context.WithTimeout(ctx, timeout)
		err := barrier(bctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failed(err)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
