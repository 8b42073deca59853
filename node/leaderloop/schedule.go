package leaderloop

// The leader's scheduler loop: on every state change (debounced) or when the
// last plan asked to be woken (restart delays, update delays), it runs the
// pure planner of node/scheduler over a snapshot of the state and writes the
// result in Raft entries of bounded size (PlanEntries). A plan creates at
// most scheduler.DefaultMaxCreate tasks; when it stops there (Plan.More) the
// loop plans again after its debounce, so a huge scale-up arrives in rounds
// of bounded entries instead of one entry that stalls the leader.

import (
	"context"
	"github.com/shoal-org/shoal/node/resync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/scheduler"
)

// maxTasksPerEntry bounds the tasks of one Raft log entry (about 2 MB), and
// maxDeletesPerEntry the task IDs of one: a big plan becomes several entries,
// each applied on its own, so no entry is large enough to stall
// replication, heartbeats or a follower's apply.
const (
	maxTasksPerEntry   = 1000
	maxDeletesPerEntry = 10000
)

func (l *Loop) schedulerLoop(ctx context.Context) {
	ch, cancel := l.cfg.Store.Subscribe()
	defer cancel()
	planner := scheduler.NewPlanner(scheduler.DefaultConfig())
	var wake *time.Timer
	wakeCh := func() <-chan time.Time {
		if wake == nil {
			return nil
		}
		return wake.C
	}
	resyncTick := resync.NewTicker(5 * time.Second)
	defer resyncTick.Stop()
	for {
		next, err := l.schedulePass(ctx, planner)
		if err != nil && ctx.Err() == nil {
			l.log.Warn("scheduler pass failed", "err", err)
		}
		if wake != nil {
			wake.Stop()
			wake = nil
		}
		if !next.IsZero() {
			d := time.Until(next)
			if d < 10*time.Millisecond {
				d = 10 * time.Millisecond
			}
			wake = time.NewTimer(d)
		}
		changed := false
		select {
		case <-ctx.Done():
			return
		case <-ch:
			changed = true
		case <-wakeCh():
		case <-resyncTick.C:
		}
		if d := Debounce(changed); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// Debounce is how long the scheduler waits before a pass: after a state
// change, long enough for a burst of status reports to land; after its own
// timers (the resync, a planned wake), nothing: no burst follows a timer,
// and on an idle leader the wait was a second wake-up for every resync.
func Debounce(stateChanged bool) time.Duration {
	if stateChanged {
		return 10 * time.Millisecond
	}
	return 0
}

func (l *Loop) schedulePass(ctx context.Context, planner *scheduler.Planner) (time.Time, error) {
	// From the read to the last entry, no snapshot restore runs (raftnode.Raft.HoldProposals):
	// a plan of the state before a restore must not land on the restored
	// state, nor be erased by it.
	ctx, release, err := l.cfg.Raft.HoldProposals(ctx)
	if err != nil {
		return time.Now().Add(500 * time.Millisecond), err
	}
	defer release()
	st := SchedulerState(l.cfg.Store)
	st.Levels = NodeLevels(l.cfg.Members, st.Nodes)
	st.Unfit = l.cfg.Members.Unfit()
	plan := metrics.Timed(l.cfg.Metrics.PlanDuration, func() scheduler.Plan { return planner.Plan(st, time.Now().UTC()) })
	entries := PlanEntries(plan)
	if len(entries) == 0 {
		return plan.NextWake, nil
	}
	for _, e := range entries {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := l.cfg.Raft.Apply(wctx, e)
		cancel()
		if err != nil {
			// The entries written so far stand; the next plan, computed
			// from the stored state, redoes the rest.
			return time.Now().Add(500 * time.Millisecond), err
		}
	}
	l.logPlan(plan)
	if plan.More {
		// Plan the next round at once, after the loop's debounce: the
		// entries just written went through Raft like any other write,
		// so status reports and user writes were not held up by them.
		return time.Now(), nil
	}
	return plan.NextWake, nil
}

// SchedulerState is the planner's input, read from one point-in-time view
// of the store. Reading table by table would let an entry applied between
// two reads show the planner a state no log prefix ever had: a task whose
// service it did not see (and would not plan for), or a service without
// the tasks created with it (and would create them twice).
func SchedulerState(store *consensus.Store) scheduler.State {
	snap := store.Snapshot()
	st := scheduler.State{}
	for _, n := range snap.Nodes() {
		st.Nodes = append(st.Nodes, *n)
	}
	for _, s := range snap.Services() {
		st.Services = append(st.Services, *s)
	}
	for _, t := range snap.Tasks() {
		st.Tasks = append(st.Tasks, *t)
	}
	for _, n := range snap.Networks() {
		if n.ShareBits != 0 {
			st.Networks = append(st.Networks, *n)
		}
	}
	return st
}

// NodeLevels is the protocol level each node's agent last advertised in
// gossip, for the planner's placement (scheduler.State.Levels): a task whose
// spec uses a field an older agent would drop is placed only where it is
// known. A node gossip has not reported since this process started is left
// out, and so counts as the base level.
func NodeLevels(m *membership.Membership, nodes []api.Node) map[string]int {
	ids := make([]string, len(nodes))
	for i := range nodes {
		ids[i] = nodes[i].ID
	}
	out := make(map[string]int, len(nodes))
	for _, p := range m.PeerLevels(ids) {
		if p.Known && p.Level > 0 {
			out[p.ID] = p.Level
		}
	}
	return out
}

// PlanEntries turns a plan into Raft log entries of bounded size, in the
// order the planner's contract asks: service updates, then task upserts
// (creates before updates), then deletions. Every command of a Batch
// applies on its own, so splitting changes what a reader may see in between
// but not the outcome.
func PlanEntries(plan scheduler.Plan) []command.Command {
	var entries []command.Command
	var cur []command.Command
	size := 0
	flush := func() {
		switch len(cur) {
		case 0:
		case 1:
			entries = append(entries, cur[0])
		default:
			entries = append(entries, &command.Batch{Commands: cur})
		}
		cur, size = nil, 0
	}
	for _, s := range plan.ServiceUpdates {
		cur = append(cur, &command.UpdateService{Service: s, ExpectVersion: s.Version})
	}
	tasks := plan.Upserts()
	for len(tasks) > 0 {
		n := min(len(tasks), maxTasksPerEntry-size)
		cur = append(cur, &command.UpsertTasks{Tasks: tasks[:n]})
		size += n
		tasks = tasks[n:]
		if size >= maxTasksPerEntry {
			flush()
		}
	}
	for ids := plan.Delete; len(ids) > 0; {
		n := min(len(ids), maxDeletesPerEntry)
		cur = append(cur, &command.DeleteTasks{IDs: ids[:n]})
		ids = ids[n:]
		flush()
	}
	flush()
	return entries
}

func (l *Loop) logPlan(p scheduler.Plan) {
	for _, t := range p.Create {
		if t.State == api.TaskAssigned {
			l.log.Debug("task assigned", "task", t.Name, "node_id", api.ShortID(t.NodeID))
		}
	}
}
