package reconciler

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/taskplan"
)

// Containers is the part of *runtime.Runtime RemoveTasks uses.
type Containers interface {
	List() []api.Container
	// Remove refuses a running container unless force (runtime.ErrRunning).
	Remove(ctx context.Context, id string, force bool) error
}

// RemoveTasks removes every task container of rt once the node has left
// its cluster (the cluster runs them elsewhere; one-off `shoal run`
// containers stay). When there are any, it first waits drain (or until
// ctx ends): the other nodes stop sending them new connections once they
// apply the node's removal, and the node that told it applied it first,
// so the others catch up and the connections they already sent here
// finish. The containers of the tasks in atOnce (AtMostOnceTasks) go
// before the drain: the cluster replaces them as soon as it removed the
// node, and an at-most-once task must not run twice, not even for the
// drain. A container that cannot be removed is logged.
func RemoveTasks(ctx context.Context, rt Containers, drain time.Duration, atOnce map[string]bool, log *slog.Logger) {
	var first, tasks []string
	for _, c := range rt.List() {
		switch {
		case c.TaskID == "":
		case atOnce[c.TaskID]:
			first = append(first, c.ID)
		default:
			tasks = append(tasks, c.ID)
		}
	}
	remove := func(ids []string) {
		for _, id := range ids {
			if err := rt.Remove(ctx, id, true); err != nil {
				log.Warn("remove task container after leaving the cluster", "container", api.ShortID(id), "err", err)
			}
		}
	}
	remove(first)
	if len(tasks) > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(drain):
		}
	}
	remove(tasks)
}

// AtMostOnceTasks returns the IDs of the tasks in tasks whose service (its
// spec in specs, else the task's own) is at most once: RemoveTasks removes
// their containers without the drain.
func AtMostOnceTasks(tasks []*api.Task, specs map[string]api.ServiceSpec) map[string]bool {
	out := map[string]bool{}
	for _, t := range tasks {
		if taskplan.SpecOf(t, specs).AtMostOnce {
			out[t.ID] = true
		}
	}
	return out
}
