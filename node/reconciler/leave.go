package reconciler

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoal-org/shoal/api"
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
// finish. A container that cannot be removed is logged.
func RemoveTasks(ctx context.Context, rt Containers, drain time.Duration, log *slog.Logger) {
	var tasks []string
	for _, c := range rt.List() {
		if c.TaskID != "" {
			tasks = append(tasks, c.ID)
		}
	}
	if len(tasks) > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(drain):
		}
	}
	for _, id := range tasks {
		if err := rt.Remove(ctx, id, true); err != nil {
			log.Warn("remove task container after leaving the cluster", "container", api.ShortID(id), "err", err)
		}
	}
}
