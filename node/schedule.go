package node

// The leader's scheduler loop: on every state change (debounced) or when the
// last plan asked to be woken (restart delays, update delays), it runs the
// pure planner of node/scheduler over a snapshot of the state and writes the
// result as one batch: new and changed tasks in one UpsertTasks, service
// update-status changes alongside.

import (
	"context"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/scheduler"
)

// maxTasksPerCommand bounds one log entry so a 100k-task plan does not
// produce a giant entry.
const maxTasksPerCommand = 2000

func (a *Agent) schedulerLoop(ctx context.Context, cl *cluster) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	planner := scheduler.NewPlanner(scheduler.DefaultConfig())
	var wake *time.Timer
	wakeCh := func() <-chan time.Time {
		if wake == nil {
			return nil
		}
		return wake.C
	}
	resync := time.NewTicker(5 * time.Second)
	defer resync.Stop()
	for {
		next, err := a.schedulePass(ctx, cl, planner)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("scheduler pass failed", "err", err)
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
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-wakeCh():
		case <-resync.C:
		}
		// Debounce: let a burst of status reports land before planning.
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (a *Agent) schedulePass(ctx context.Context, cl *cluster, planner *scheduler.Planner) (time.Time, error) {
	st := scheduler.State{}
	for _, n := range cl.store.Nodes() {
		st.Nodes = append(st.Nodes, *n)
	}
	for _, s := range cl.store.Services() {
		st.Services = append(st.Services, *s)
	}
	for _, t := range cl.store.Tasks() {
		st.Tasks = append(st.Tasks, *t)
	}
	plan := planner.Plan(st, time.Now().UTC())
	var cmds []consensus.Command
	for _, s := range plan.ServiceUpdates {
		cmds = append(cmds, &consensus.UpdateService{Service: s, ExpectVersion: s.Version})
	}
	tasks := append(plan.Create, plan.Update...)
	for len(tasks) > 0 {
		n := min(len(tasks), maxTasksPerCommand)
		cmds = append(cmds, &consensus.UpsertTasks{Tasks: tasks[:n]})
		tasks = tasks[n:]
	}
	if len(plan.Delete) > 0 {
		cmds = append(cmds, &consensus.DeleteTasks{IDs: plan.Delete})
	}
	if len(cmds) == 0 {
		return plan.NextWake, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	if len(cmds) == 1 {
		_, err = cl.raft.Apply(wctx, cmds[0])
	} else {
		_, err = cl.raft.Apply(wctx, &consensus.Batch{Commands: cmds})
	}
	if err != nil {
		return time.Now().Add(500 * time.Millisecond), err
	}
	logPlan(a, plan)
	return plan.NextWake, nil
}

func logPlan(a *Agent, p scheduler.Plan) {
	for _, t := range p.Create {
		if t.State == api.TaskAssigned {
			a.log.Debug("task assigned", "task", t.Name, "node_id", shortID(t.NodeID))
		}
	}
}
