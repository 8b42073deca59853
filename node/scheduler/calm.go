package scheduler

// Calm: the orchestrator must not turn a short network blip into churn, and
// must even out the spread when a node joins or comes back.
//
// Disconnects (Nomad's disconnect { reconcile = "keep_original" }). A task
// whose node is down keeps its record untouched — desired running, last
// observed state — for the service's DisconnectGrace (default 60s, counted
// from the node's StatusChangedAt). Its slot is served by a replacement
// started at once elsewhere (availability first); the away task is neither
// a keeper nor a duplicate while its node is down. When the node comes back
// within the grace period the slot holds two ready tasks, and better()
// keeps the one that has run longest — the original — so the replacement
// is stopped and nothing that served through the blip is restarted. Past
// the grace period the task is written off (orphaned, desired shutdown) as
// before, and a node that comes back later stops it.
//
// At-most-once services (AtMostOnce) never run two tasks of one slot: the
// slot of an away task gets no replacement until the node is written off,
// which for them is the grace period plus the stop grace period. The node
// itself stops such tasks once it has not heard from a leader for the
// grace period (the reconciler's fence, node/reconciler), so by the time
// the leader replaces the task it has been stopped (killed at worst) — the
// node's last contact is never later than the leader's down mark.
//
// Rebalancing. A replicated service (unless NoRebalance or AtMostOnce)
// whose active tasks are spread unevenly over the nodes that could run
// them — a node joined or came back and got nothing, a node holds more
// than a lowered max replicas per node — moves tasks: a node's excess
// first, then between the groups of the placement preferences (a node in
// a new zone gets the zone's share), then between the nodes of a group
// (placement.PlanMoves), at most UpdateConfig.Parallelism at a time (0 = all) and Delay
// after the last move started. A move is start-first: a new task of the
// same slot with Replaces = the old task's ID is placed on the target; the
// old one is stopped only when the new one is ready, so the running count
// never drops below the replicas. A move that fails is stopped, the old
// task stays, and the service makes no other move for rebalanceBackoff.
// Moves wait while the service updates, places or starts tasks. planMoves
// is the pure decision; it is table-tested.

import (
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/placement"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
)

// rebalanceBackoff is how long a service makes no rebalancing move after
// one failed.
const rebalanceBackoff = time.Minute

// awayUntil is when the tasks of down node n are written off for this
// service. A node without a recorded status change is written off at once.
// For an at-most-once service the grace counts from the down mark or from
// this planner's first sight of the node down, whichever is later: the
// mark is dated by the clock of the leader that wrote it, and the node's
// fence by its own silence, so a leader whose clock is ahead must not
// count the grace as passed.
func (s *svcRun) awayUntil(n *placement.NodeInfo) time.Time {
	if n.Node.StatusChangedAt.IsZero() {
		return time.Time{}
	}
	from := n.Node.StatusChangedAt
	if !s.spec.AtMostOnce {
		return from.Add(servicespec.DisconnectGrace(s.spec))
	}
	if seen, ok := s.r.seen.Down[n.Node.ID]; ok && seen.After(from) {
		from = seen
	}
	return from.Add(s.fenceWait())
}

// fenceWait is how long after a node is lost its at-most-once tasks are
// sure to have stopped: the disconnect grace, after which the node's own
// fence stops them when it has heard no leader, plus their stop grace.
func (s *svcRun) fenceWait() time.Duration {
	stop := s.spec.StopGracePeriod
	switch {
	case stop == api.ExplicitZero: // the fence kills at once
		stop = 0
	case stop <= 0:
		stop = servicespec.DefaultStopGracePeriod
	}
	return servicespec.DisconnectGrace(s.spec) + stop
}

// removedUntil is when at-most-once task t, orphaned with its node by a
// removal (`node rm`, also --force of a live node), is sure to have
// stopped: fenceWait after the later of the removal (t.UpdatedAt, the
// removing leader's clock) and this planner's first sight of it.
//
// Why wait at all: a removed node that hears of its removal stops its
// at-most-once containers at once, before its drain (node/revocation),
// but it hears of it tens of milliseconds after the commit, in which the
// replacement may already start; and a removed node that hears nothing
// (force-removed while partitioned) stops them only when its fence does,
// the grace after it last heard a leader. The slot stays empty until then,
// as for a down node (awayUntil).
func (s *svcRun) removedUntil(t *api.Task) time.Time {
	from := t.UpdatedAt
	if seen, ok := s.r.seen.Removed[t.ID]; ok && seen.After(from) {
		from = seen
	}
	return from.Add(s.fenceWait())
}

// keepAway reports whether ref is a task meant to run on a node that is
// down but within the grace period: such a task is left exactly as it is
// (marked away for this plan) and the planner wakes when the grace ends.
func (s *svcRun) keepAway(ref *taskRef) bool {
	t, n := ref.t, ref.node
	if n == nil || n.Node.Status != api.NodeDown || t.DesiredState != api.TaskRunning ||
		t.State == api.TaskNew || terminal(t.State) {
		return false
	}
	until := s.awayUntil(n)
	if !s.r.now.Before(until) {
		return false
	}
	s.r.wakeAt(until)
	ref.away = true
	return true
}

// hasAway reports whether the slot has a task kept for its down node.
func (s *svcRun) hasAway(sl *slot) bool {
	for _, ref := range sl.tasks {
		if ref.away {
			return true
		}
	}
	return false
}

// moves settles the rebalancing moves of a slot: a task started to replace
// another of the slot (Replaces) takes over once it is ready (the other is
// stopped), is stopped if it ended, and is otherwise in flight. It returns
// the moves in flight: they and the tasks they replace are kept as they are.
func (s *svcRun) moves(sl *slot) map[*taskRef]bool {
	var moving map[*taskRef]bool
	for _, x := range sl.tasks {
		if x.t.Replaces == "" || x.t.DesiredState != api.TaskRunning || x.away {
			continue
		}
		var y *taskRef
		for _, ref := range sl.tasks {
			if ref.t.ID == x.t.Replaces && ref.t.DesiredState == api.TaskRunning && !ref.away && !terminal(ref.t.State) {
				y = ref
			}
		}
		if y == nil {
			continue // an ordinary task now
		}
		switch {
		case terminal(x.t.State):
			s.r.shutdown(x, "rebalancing move failed; task "+y.t.ID+" stays")
		case ready(x.t):
			s.r.shutdown(y, "rebalanced: moved to node "+api.ShortID(x.t.NodeID)+" (task "+x.t.ID+")")
		default:
			if moving == nil {
				moving = map[*taskRef]bool{}
			}
			moving[x] = true
			s.moving++
			if s.replaced == nil {
				s.replaced = map[string]bool{}
			}
			s.replaced[y.t.ID] = true
		}
	}
	return moving
}

// rebalances reports whether the service may move tasks toward an even
// spread. Not a global service (one per node already), not one that opted
// out, and not an at-most-once service: a move is start-first, so it would
// run one slot twice until the old task stops.
func (s *svcRun) rebalances() bool {
	return !s.global && !s.spec.NoRebalance && !s.spec.AtMostOnce
}

// noteMovable records a slot's keeper as a candidate for a rebalancing move.
func (s *svcRun) noteMovable(ref *taskRef) {
	if !s.rebalances() || ref.node == nil || !ready(ref.t) || s.replaced[ref.t.ID] {
		return
	}
	s.movable = append(s.movable, ref)
}

// noteRebalance decides, once the service's slots are resolved, whether it
// may move tasks in this plan, and queues it for rebalanceAll.
func (s *svcRun) noteRebalance() {
	u := &s.upd
	if !s.rebalances() || len(s.movable) == 0 || u.inFlight > 0 || u.busy > 0 || u.outdated > 0 ||
		len(s.toPlace) > 0 {
		return
	}
	// The status as this plan leaves it: the plan that completes an update
	// may already move tasks (the next one would, and plans are idempotent).
	if st := s.svc.UpdateStatus; st != nil && (st.State == api.UpdateUpdating || st.State == api.UpdateRollbackStarted) {
		return
	}
	// The node's clock dates a move's start and failure; both count from
	// this planner's first sight of them instead (Planner.seen).
	var lastStart time.Time
	for _, ref := range s.tasks {
		t := ref.t
		if t.Replaces == "" {
			continue
		}
		if failed, ok := s.r.seen.MoveFail[t.ID]; ok && s.r.now.Before(failed.Add(rebalanceBackoff)) {
			s.r.wakeAt(failed.Add(rebalanceBackoff))
			return
		}
		if started, ok := s.r.seen.MoveStart[t.ID]; ok && started.After(lastStart) {
			lastStart = started
		}
	}
	if d := s.spec.UpdateConfig.Delay; d > 0 && !lastStart.IsZero() && s.r.now.Before(lastStart.Add(d)) {
		// Only when there is something to move: planMoves decides, so
		// wake then and look again.
		s.noMoves = true
		s.r.wakeAt(lastStart.Add(d))
	}
	s.r.rebalance = append(s.r.rebalance, s)
}

// rebalanceAll moves tasks of the services noteRebalance queued, services
// in ID order, after every new task of the plan has been placed.
func (r *run) rebalanceAll() {
	if len(r.rebalance) == 0 {
		return
	}
	r.countUsage()
	for _, s := range r.rebalance {
		s.rebalance()
	}
}

// rebalance plans and creates one service's moves.
func (s *svcRun) rebalance() {
	r := s.r
	req := placement.Request{Level: s.level, Constraints: s.cs, Reservations: s.spec.Resources.Reservations, Shares: s.shares, HostPorts: s.hostPorts}
	idx := map[*placement.NodeInfo]int{}
	var nodes []placement.MoveNode
	var infos []*placement.NodeInfo
	// Failure avoidance as in placement: a node where the service's tasks
	// keep failing takes no move (a move there only fails and backs the
	// service's rebalancing off, once a minute, for as long as it lasts).
	failures := r.recentFailures([2][]*taskRef{s.tasks, s.newTasks})
	for _, n := range r.nodeList {
		if s.eligibleGlobal(n, &req) {
			idx[n] = len(nodes)
			nodes = append(nodes, placement.MoveNode{ID: n.Node.ID, Group: placement.GroupPath(s.prefs, n.Node),
				Faulty: failures != nil && failures[n.Index] >= MaxNodeFailures})
			infos = append(infos, n)
		}
	}
	if len(nodes) < 2 {
		return
	}
	for _, refs := range [2][]*taskRef{s.tasks, s.newTasks} {
		for _, ref := range refs {
			t := ref.t
			if ref.deleted || ref.away || ref.node == nil || t.DesiredState != api.TaskRunning ||
				terminal(t.State) {
				continue
			}
			i, ok := idx[ref.node]
			switch {
			case !ok:
			case s.replaced[t.ID]:
				// Still running until its move's new task is ready: no
				// other move may fill its node past the limit meanwhile.
				nodes[i].Leaving++
			default:
				nodes[i].Count++
			}
		}
	}
	byNode := make([][]*taskRef, len(nodes))
	for _, ref := range s.movable {
		if i, ok := idx[ref.node]; ok && ref.t.DesiredState == api.TaskRunning {
			byNode[i] = append(byNode[i], ref)
			nodes[i].Movable++
		}
	}
	budget := -1
	if p := s.spec.UpdateConfig.Parallelism; p > 0 {
		budget = max(p-s.moving, 0)
	}
	if s.noMoves {
		budget = 0
	}
	// One more than the plan may create: the moves it cannot create make
	// it say More (take), and PlanMoves' work stays O(MaxCreate · nodes).
	if budget < 0 || budget > r.budget {
		budget = r.budget + 1
	}
	canTake := func(i, extra int) bool {
		if extra > 0 && len(req.HostPorts) > 0 {
			// An earlier move of this plan to the node holds the port.
			return false
		}
		n := *infos[i]
		for k := 0; k < extra; k++ {
			addRes(&n.Reserved, req.Reservations)
		}
		ok, _ := r.cfg.Pipeline.Check(&n, &req)
		return ok
	}
	moves := placement.PlanMoves(nodes, budget, int(s.spec.MaxReplicasPerNode), canTake)
	if len(moves) == 0 {
		return
	}
	// Move the newest tasks first: they have served the least.
	for _, b := range byNode {
		sort.Slice(b, func(i, j int) bool { return olderTask(b[j].t, b[i].t) })
	}
	for _, m := range moves {
		if ok, _ := (placement.ShareFilter{}).Check(infos[m.To], &req); !ok {
			// PlanMoves checked each target alone: an earlier move of
			// this plan took the last free share of a network.
			continue
		}
		if ok, _ := (placement.HostPortFilter{}).Check(infos[m.To], &req); !ok {
			continue // likewise, a host-mode port
		}
		if !r.take() {
			return
		}
		y := byNode[m.From][0]
		byNode[m.From] = byNode[m.From][1:]
		x := s.makeTask(y.t.Slot, "")
		x.t.Replaces = y.t.ID
		r.assign(x, infos[m.To])
		x.t.Message = "rebalancing: replaces task " + y.t.ID + " on node " + api.ShortID(y.t.NodeID)
	}
}
