package progress

// The verdict of one poll while the CLI waits for a service to converge
// after create/update/scale/rollback, the way `docker service create` does
// without -d (the waiting loop is cmd/shoal/service's wait.go): one line
// per slot, and done when the running tasks match the spec and an update
// has passed its monitor period, failed when the update pauses or rolls
// back, or when tasks keep failing.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Operations a wait follows.
const (
	OpCreate   = "create"
	OpUpdate   = "update"
	OpScale    = "scale"
	OpRollback = "rollback"
)

// failuresPerSlot is how many failed tasks of the current spec per desired
// task make the wait give up ("tasks keep failing").
const failuresPerSlot = 3

// SlotLine is one progress line: web.1: running.
type SlotLine struct {
	Name string
	Text string
}

// Convergence is the verdict of one poll.
type Convergence struct {
	Name    string
	Desired int
	Running int
	Slots   []SlotLine
	// Note is a line about the service as a whole (an update's monitor
	// period), printed when it changes.
	Note string
	Done bool
	Err  error
	// Job: a job service (assessJob); Completed counts the tasks of its
	// current run that completed, Desired the completions it needs.
	Job       bool
	Completed int
	// RunningIDs are the IDs of the running tasks of the current spec that
	// Running counts, and Monitor the spec's update monitor period: a
	// create or scale is done only once each of them ran that long
	// (Stability), as docker's wait verifies that tasks are stable.
	RunningIDs []string
	Monitor    time.Duration
}

// currentTask reports whether t runs the service's current spec (spec):
// its own version, or a spec the planner would not replace it for
// (api.MaterialEqual). A task keeps its old version when an update changes
// nothing material (labels, ports, policies, the endpoint mode), and a
// wait that held out for it would never end.
func currentTask(t api.Task, svc api.Service, spec *api.ServiceSpec) bool {
	if svc.Version != 0 && t.SpecVersion == svc.Version {
		return true
	}
	if t.Spec.Image == "" && t.Spec.Name == "" {
		// The agent did not send the task's spec: compare what it did send.
		return t.Image == svc.Spec.Image
	}
	return api.MaterialEqual(&t.Spec, spec)
}

// Assess judges convergence from one poll. nodes is only used for a global
// service with no task yet; ignore holds IDs of tasks that had already failed
// when the wait began.
func Assess(op string, svc api.Service, tasks []api.Task, nodes []api.Node, ignore map[string]bool) Convergence {
	spec := svc.Spec
	if spec.Name == "" && spec.Image == "" {
		spec.Mode, spec.Replicas, spec.Image = svc.Mode, svc.Replicas, svc.Image
	}
	if api.IsJob(spec.Mode) {
		svc.Spec = spec
		return assessJob(svc, tasks, ignore)
	}
	name := svc.Name
	if name == "" {
		name = spec.Name
	}
	global := spec.Mode == api.ModeGlobal

	// Group tasks by slot (node for global) and pick the task that speaks
	// for the group: the newest that should run, else the newest.
	groups := map[string]api.Task{}
	for _, t := range tasks {
		k := strconv.Itoa(t.Slot)
		if global || t.Slot == 0 {
			k = t.NodeID
		}
		cur, ok := groups[k]
		want, curWant := t.DesiredState == api.TaskRunning, cur.DesiredState == api.TaskRunning
		if !ok || (want && !curWant) || (want == curWant && t.CreatedAt.After(cur.CreatedAt)) {
			groups[k] = t
		}
	}

	conv := Convergence{Name: name, Monitor: spec.UpdateConfig.MonitorPeriod()}
	running := map[string]bool{}
	staleRunning := false
	failed := 0
	var lastFailed api.Task
	for _, t := range tasks {
		cur := currentTask(t, svc, &spec)
		if t.DesiredState == api.TaskRunning && !cur && !api.TaskTerminal(t.State) {
			staleRunning = true
		}
		if t.DesiredState == api.TaskRunning && t.State == api.TaskRunning && cur {
			if global {
				running[t.NodeID] = true
			} else {
				running[t.ID] = true
			}
			conv.RunningIDs = append(conv.RunningIDs, t.ID)
		}
		if cur && (t.State == api.TaskFailed || t.State == api.TaskRejected) && !ignore[t.ID] {
			failed++
			if t.UpdatedAt.After(lastFailed.UpdatedAt) || lastFailed.ID == "" {
				lastFailed = t
			}
		}
	}
	conv.Running = len(running)

	if global {
		nodesWithTasks := map[string]bool{}
		for _, t := range tasks {
			if t.DesiredState == api.TaskRunning {
				nodesWithTasks[t.NodeID] = true
			}
		}
		conv.Desired = len(nodesWithTasks)
		if conv.Desired == 0 {
			for _, n := range nodes {
				if n.Status == api.NodeReady && n.Availability == api.AvailabilityActive {
					conv.Desired++
				}
			}
		}
	} else {
		conv.Desired = int(spec.Replicas)
	}

	for _, t := range groups {
		// A slot above the replicas is scaled away: gone once stopped,
		// and while it stops its state is not the service's (a pending
		// task's "no suitable node" no longer holds the wait up).
		scaledAway := t.DesiredState != api.TaskRunning && !global && t.Slot > conv.Desired
		if scaledAway && api.TaskTerminal(t.State) {
			continue
		}
		label := t.Name
		if label == "" {
			label = fmt.Sprintf("%s.%d", name, t.Slot)
		}
		if global && t.Node != "" {
			label = name + "@" + t.Node
		}
		text := t.State
		switch {
		case scaledAway:
			text += " (scaled down)"
		case t.Error != "":
			text += ": " + t.Error
		case t.State == api.TaskNew && t.Message != "":
			// Why it waits (no suitable node, ...), as service ps shows.
			text += ": " + t.Message
		}
		if !currentTask(t, svc, &spec) && t.DesiredState == api.TaskRunning {
			text += " (previous version)"
		}
		conv.Slots = append(conv.Slots, SlotLine{Name: label, Text: text})
	}
	sort.Slice(conv.Slots, func(i, j int) bool { return slotLess(conv.Slots[i].Name, conv.Slots[j].Name) })

	if us := svc.UpdateStatus; us != nil {
		msg := us.Message
		if msg == "" {
			msg = us.State
		}
		switch {
		case op == OpUpdate && us.State == api.UpdatePaused:
			conv.Err = fmt.Errorf("update of %s paused: %s", name, msg)
		case op == OpUpdate && us.State == api.UpdateRollbackCompleted:
			conv.Err = fmt.Errorf("update of %s failed and was rolled back: %s", name, msg)
		case op == OpUpdate && us.State == api.UpdateRollbackPaused:
			conv.Err = fmt.Errorf("update of %s failed and its rollback paused: %s", name, msg)
		case op == OpRollback && (us.State == api.UpdateRollbackPaused || us.State == api.UpdatePaused):
			conv.Err = fmt.Errorf("rollback of %s paused: %s", name, msg)
		}
		if conv.Err != nil {
			return conv
		}
		// An update that failed and rolls back is waited for until the
		// rollback ends, as docker's wait does: an error at its start
		// left the caller with a service still half on the failed spec.
		if op == OpUpdate && us.State == api.UpdateRollbackStarted {
			conv.Note = fmt.Sprintf("%s: update failed, rolling back: %s", name, msg)
		}
	}
	if err := endedForGood(name, spec, groups, svc, ignore); err != nil {
		conv.Err = err
		return conv
	}
	if limit := failuresPerSlot * max(conv.Desired, 1); failed >= limit {
		conv.Err = fmt.Errorf("tasks of %s keep failing (%d failures): %s: %s", name, failed, lastFailed.Name, firstNonEmpty(lastFailed.Error, lastFailed.Message, lastFailed.State))
		return conv
	}
	conv.Done = conv.Running == conv.Desired && !staleRunning && (!global || conv.Desired > 0 || len(tasks) > 0)
	if conv.Done {
		conv.Note = overLimit(name, spec, tasks)
	}
	// Every task runs the new spec, but the update watches them for its
	// monitor period before it is complete: a task that dies within it
	// still pauses or rolls back the update (docker's "verify: waiting").
	if us := svc.UpdateStatus; conv.Done && us != nil && (op == OpUpdate || op == OpRollback) &&
		(us.State == api.UpdateUpdating || us.State == api.UpdateRollbackStarted) {
		conv.Done = false
		monitor := spec.UpdateConfig.MonitorPeriod()
		if us.State == api.UpdateRollbackStarted {
			monitor = spec.RollbackConfig.MonitorPeriod()
		}
		verify := fmt.Sprintf("%s: verifying that tasks are stable", name)
		if monitor > 0 {
			verify += fmt.Sprintf(" (monitor %s)", monitor)
		}
		if conv.Note != "" {
			verify = conv.Note + "; " + strings.TrimPrefix(verify, name+": ")
		}
		conv.Note = verify
	}
	return conv
}

// endedForGood is the error for a slot (node, for a global service) whose
// task of the current spec ended and that its restart condition never
// starts again: --restart-condition none after any end, on-failure after a
// clean exit. Nothing would change any more, and the wait held out until
// its timeout (2 minutes by default) to say only "did not converge".
// groups holds each slot's newest task, one meant to run first; tasks that
// had ended before the wait began (ignore) do not count.
func endedForGood(name string, spec api.ServiceSpec, groups map[string]api.Task, svc api.Service, ignore map[string]bool) error {
	cond := spec.RestartPolicy.Condition
	if cond != api.RestartNone && cond != api.RestartOnFailure {
		return nil
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := groups[k]
		if t.DesiredState != api.TaskRunning || ignore[t.ID] || !currentTask(t, svc, &spec) {
			continue
		}
		if t.State != api.TaskComplete && (cond != api.RestartNone || t.State != api.TaskFailed) {
			continue
		}
		how := t.State
		if t.Error != "" {
			how += ": " + t.Error
		}
		return fmt.Errorf("%s: task %s ended (%s) and --restart-condition %s does not start it again", name, t.Name, how, cond)
	}
	return nil
}

// overLimit is the note for a service whose running tasks exceed its max
// replicas per node on some node, or "". A lowered limit stops no serving
// task (node/scheduler's README): the excess moves when another node has
// room. Without the note the wait said "converged" over a limit the spec
// says holds.
func overLimit(name string, spec api.ServiceSpec, tasks []api.Task) string {
	limit := int(spec.MaxReplicasPerNode)
	if limit <= 0 || spec.Mode == api.ModeGlobal {
		return ""
	}
	per := map[string]int{}
	for _, t := range tasks {
		if t.DesiredState == api.TaskRunning && t.State == api.TaskRunning {
			per[t.NodeID]++
		}
	}
	over := 0
	for _, n := range per {
		if n > limit {
			over++
		}
	}
	if over == 0 {
		return ""
	}
	nodes := "1 node runs"
	if over > 1 {
		nodes = fmt.Sprintf("%d nodes run", over)
	}
	return fmt.Sprintf("%s: %s more tasks than max replicas per node (%d): the excess keeps running until another node has room for it", name, nodes, limit)
}

// slotLess orders web.2 before web.10.
func slotLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
