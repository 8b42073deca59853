package shell

import (
	"context"
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
)

// RunsElsewhere adds to notFound where the task named ref runs when that
// is another node: containers are reached only through their own node's
// agent, and "no such container: web.1" for a task that `service ps`
// shows running left a user to guess why. Every command that takes a
// container or task name of this node (logs, stop, rm, inspect, exec) says
// it the same way. Lookup failures leave notFound as it is.
func RunsElsewhere(ctx context.Context, cl *client.Client, ref string, notFound error) error {
	tasks, err := cl.Tasks(ctx, client.TaskFilter{DesiredState: api.TaskRunning})
	if err != nil {
		return notFound
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return notFound
	}
	for _, t := range tasks {
		if t.Name != ref || t.DesiredState != api.TaskRunning || t.NodeID == st.NodeID {
			continue
		}
		node := t.Node
		if node == "" {
			node = output.ShortID(t.NodeID, false)
		}
		return fmt.Errorf("%w (task %s runs on node %s: run the command there)", notFound, ref, output.Sanitize(node))
	}
	return notFound
}
