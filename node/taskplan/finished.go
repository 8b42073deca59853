package taskplan

import (
	"fmt"
	"sort"

	"github.com/shoal-org/shoal/api"
)

// KeepFinished is how many of the newest tasks of a slot keep their
// container after they ended, for `shoal service ps` and logs of the last
// failure; older ones live on only in the task history.
const KeepFinished = 2

// GCFinished returns the IDs of the containers to remove because their task
// ended and is no longer among the KeepFinished newest of its slot (service
// and slot number; tasks are all this node's tasks). A running container is
// never named (whatever its task says, ComputeActions stops it first), nor a
// container without a task (`shoal run`) or of a task not in tasks (that
// removal waits until the replica is synced: ComputeActions). The caller
// removes them without force: containers is a snapshot, and one that started
// since must not be killed.
func GCFinished(tasks []*api.Task, containers []api.Container) []string {
	keep := map[string]bool{}
	groups := map[string][]*api.Task{}
	for _, t := range tasks {
		k := fmt.Sprintf("%s/%d", t.ServiceID, t.Slot)
		groups[k] = append(groups[k], t)
	}
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool { return g[i].CreatedAt.After(g[j].CreatedAt) })
		for i, t := range g {
			if i < KeepFinished || !api.TaskTerminal(t.State) {
				keep[t.ID] = true
			}
		}
	}
	known := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		known[t.ID] = true
	}
	var out []string
	for _, c := range containers {
		if c.TaskID == "" || keep[c.TaskID] || c.State == api.ContainerRunning {
			continue
		}
		if known[c.TaskID] {
			out = append(out, c.ID)
		}
	}
	return out
}

// WithPending overlays the reports this node queued but has not yet seen
// committed (pending: task ID → status) on tasks, so that ComputeActions
// treats them as the tasks' state and reports each state once, not once per
// pass until the leader's commit comes back. It replaces the entries of
// tasks that have a pending report with changed copies (State, Health,
// ContainerID) and never writes through the pointers it was given: those
// are the replica's.
func WithPending(tasks []*api.Task, pending map[string]api.TaskStatus) {
	for i, t := range tasks {
		if st, ok := pending[t.ID]; ok {
			tt := *t
			tt.State, tt.Health, tt.ContainerID = st.State, st.Health, st.ContainerID
			tasks[i] = &tt
		}
	}
}
