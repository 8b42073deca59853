// Package taskplan decides what this node's containers should do, from one
// snapshot: the tasks the leader assigned here (the local replica), the
// containers the runtime reports, and a few facts about the cluster (is the
// replica caught up, how long since a leader was heard, how far each load
// balancer has synced). It is the compute half of the node's reconciler:
//
//	ComputeActions(tasks, containers)   what closes the gap
//	FenceActions(actions, quiet)        at-most-once tasks stop when cut off
//	DrainStops(actions, lbs, now)       a stop waits until no node routes to it
//
// Every function here is pure: no clock (now comes in), no runtime, no store,
// no goroutines. The reconciler in node reads the snapshot, calls them in
// that order and applies the result (runtime calls, status reports); the
// tables in this package's tests are the specification of what it does.
package taskplan

import (
	"fmt"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Kind is what an Action asks the reconciler to do.
type Kind int

const (
	Start  Kind = iota // prepare image, create and start the task's container
	Stop               // stop the running container of a task
	Remove             // remove a container (task gone or long finished)
	Report             // report an observed state to the leader
)

// Action is one step of a plan. Task is nil only for a Remove of a container
// whose task this node does not know; Container is set for Stop and Remove;
// Status only for Report. The pointers are shared with the inputs (Task) or
// are copies made for the action (Container): the caller must not change
// what they point to.
type Action struct {
	Kind      Kind
	Task      *api.Task
	Container *api.Container
	Status    api.TaskStatus
}

// ComputeActions returns what closes the gap between the tasks assigned to
// nodeID and the containers the runtime lists (tasks of other nodes are
// ignored; containers without a task ID, from `shoal run`, are never
// touched). A report is made only when it moves the task's state forward or
// changes its health or container, and carries now as its timestamp, so
// feeding reports back into the tasks reaches a fixed point. Containers of
// tasks this node does not know are removed only when synced (the local
// replica has caught up with a leader): an agent restart, or a node back
// from a partition, must not kill healthy containers of tasks it has not
// heard of yet.
func ComputeActions(nodeID string, tasks []*api.Task, containers []api.Container, synced bool, now time.Time) []Action {
	byTask := map[string]api.Container{}
	for _, c := range containers {
		if c.TaskID == "" {
			continue
		}
		if old, ok := byTask[c.TaskID]; ok && old.CreatedAt.After(c.CreatedAt) {
			continue
		}
		byTask[c.TaskID] = c
	}
	known := map[string]bool{}
	var acts []Action
	report := func(t *api.Task, st api.TaskStatus) {
		if api.TaskStateOrder[st.State] < api.TaskStateOrder[t.State] {
			return
		}
		if st.State == t.State && st.Health == t.Health && st.ContainerID == t.ContainerID {
			return
		}
		st.TaskID = t.ID
		st.Timestamp = now
		acts = append(acts, Action{Kind: Report, Task: t, Status: st})
	}
	for _, t := range tasks {
		if t.NodeID != nodeID {
			continue
		}
		known[t.ID] = true
		c, has := byTask[t.ID]
		switch {
		case t.DesiredState == api.TaskRunning && !api.TaskTerminal(t.State):
			if !has {
				if api.TaskStateOrder[t.State] >= api.TaskStateOrder[api.TaskStarting] && t.ContainerID != "" {
					// It had a container that is gone (removed by hand or
					// lost with the machine): the task failed.
					report(t, api.TaskStatus{State: api.TaskFailed, Error: "container disappeared", ExitCode: -1, ContainerID: t.ContainerID})
					continue
				}
				acts = append(acts, Action{Kind: Start, Task: t})
				continue
			}
			switch c.State {
			case api.ContainerRunning:
				if c.Health == api.HealthUnhealthy {
					cc := c
					acts = append(acts, Action{Kind: Stop, Task: t, Container: &cc})
					report(t, api.TaskStatus{State: api.TaskFailed, Error: "task: container unhealthy", ExitCode: c.ExitCode, ContainerID: c.ID, Health: c.Health})
					continue
				}
				report(t, api.TaskStatus{State: api.TaskRunning, ContainerID: c.ID, Health: c.Health, IP: c.IP})
			case api.ContainerCreated:
				// Created but never started: the agent died between the
				// two steps. Remove it; the next pass starts a fresh one.
				// (A start in flight also passes through created: the
				// reconciler skips the removal while it runs.)
				cc := c
				acts = append(acts, Action{Kind: Remove, Task: t, Container: &cc})
			case api.ContainerExited:
				st := api.TaskStatus{State: api.TaskComplete, ExitCode: c.ExitCode, ContainerID: c.ID}
				if c.ExitCode != 0 {
					st.State = api.TaskFailed
					st.Error = fmt.Sprintf("task: non-zero exit (%d)", c.ExitCode)
				}
				report(t, st)
			}
		default: // desired shutdown (or the task is finished)
			if has && c.State == api.ContainerRunning {
				cc := c
				acts = append(acts, Action{Kind: Stop, Task: t, Container: &cc})
				continue
			}
			if !api.TaskTerminal(t.State) {
				st := api.TaskStatus{State: api.TaskShutdown, ContainerID: t.ContainerID}
				if has {
					st.ExitCode = c.ExitCode
				}
				report(t, st)
			}
		}
	}
	if synced {
		for id, c := range byTask {
			if !known[id] {
				cc := c
				acts = append(acts, Action{Kind: Remove, Container: &cc})
			}
		}
	}
	return acts
}
