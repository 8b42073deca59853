package consensus

import "github.com/shoal-org/shoal/api"

// KeepObserved protects the forward-only rule against a writer (the
// scheduler) that proposes a task read before a newer status report: unless
// the proposed observed state is strictly further along, the stored observed
// fields of old win in next. The FSM's UpsertTasks (consensus/fsm) and
// PlanRestore apply it.
func KeepObserved(old, next *api.Task) {
	if api.TaskStateOrder[next.State] > api.TaskStateOrder[old.State] {
		return
	}
	next.State = old.State
	next.Error = old.Error
	next.ExitCode = old.ExitCode
	next.ContainerID = old.ContainerID
	next.IP = old.IP
	next.IPs = old.IPs
	next.Health = old.Health
	next.StartedAt = old.StartedAt
	// Once a node handles the task, its reports own the message, except
	// the writer's reason for a change of desired state ("node drained"):
	// that is what `service ps` must show for a task it stopped.
	changed := next.DesiredState != old.DesiredState && next.Message != ""
	if api.TaskStateOrder[old.State] >= api.TaskStateOrder[api.TaskPreparing] && !changed {
		next.Message = old.Message
	}
}
