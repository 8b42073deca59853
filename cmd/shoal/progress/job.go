package progress

import (
	"fmt"
	"sort"

	"github.com/shoal-org/shoal/api"
)

// assessJob is Assess for a job service (replicated-job, global-job), as
// docker's progress for jobs: a line per task of the current run (the
// service's version: any write runs the job again), done once the run
// has its completions — replicas of them for a replicated job, one on
// every node it has a task on for a global job — failed when its tasks
// keep failing.
func assessJob(svc api.Service, tasks []api.Task, ignore map[string]bool) Convergence {
	spec := svc.Spec
	name := svc.Name
	if name == "" {
		name = spec.Name
	}
	conv := Convergence{Name: name, Job: true}
	global := api.GlobalMode(spec.Mode)
	nodes := api.NewJobRunNodes(svc.Version)
	failed := 0
	var lastFailed api.Task
	for _, t := range tasks {
		if t.SpecVersion != svc.Version {
			continue
		}
		switch {
		case t.State == api.TaskComplete && t.ExitCode == 0:
			conv.Completed++
		case t.State == api.TaskRunning && t.DesiredState == api.TaskRunning:
			conv.Running++
		case (t.State == api.TaskFailed || t.State == api.TaskRejected || t.State == api.TaskComplete) && !ignore[t.ID]:
			failed++
			if lastFailed.ID == "" || t.UpdatedAt.After(lastFailed.UpdatedAt) {
				lastFailed = t
			}
		}
		// A finished task is desired complete (node/scheduler), a failed
		// one not retried desired shutdown: both still count for their
		// node.
		nodes.Add(&t)
		label := t.Name
		if global && t.Node != "" {
			label = name + "@" + t.Node
		}
		text := t.State
		switch {
		case t.Error != "":
			text += ": " + t.Error
		case t.State == api.TaskNew && t.Message != "":
			text += ": " + t.Message
		}
		if t.DesiredState == api.TaskRunning || t.State == api.TaskComplete {
			conv.Slots = append(conv.Slots, SlotLine{Name: label, Text: text})
		}
	}
	sort.Slice(conv.Slots, func(i, j int) bool { return slotLess(conv.Slots[i].Name, conv.Slots[j].Name) })
	conv.Desired = int(spec.Replicas)
	if global {
		conv.Desired = nodes.Count()
	}
	// With --restart-condition none a failed task of the run is never run
	// again (node/scheduler/jobs): the run cannot complete, and the wait
	// held out until its timeout.
	if failed > 0 && spec.RestartPolicy.Condition == api.RestartNone {
		conv.Err = fmt.Errorf("%s: task %s failed (%s) and --restart-condition none does not run it again: the job cannot complete", name, lastFailed.Name, firstNonEmpty(lastFailed.Error, lastFailed.Message, lastFailed.State))
		return conv
	}
	if limit := failuresPerSlot * max(conv.Desired, 1); failed >= limit {
		conv.Err = fmt.Errorf("tasks of %s keep failing (%d failures): %s: %s", name, failed, lastFailed.Name, firstNonEmpty(lastFailed.Error, lastFailed.Message, lastFailed.State))
		return conv
	}
	conv.Done = conv.Completed >= conv.Desired && (!global || conv.Desired > 0)
	return conv
}
