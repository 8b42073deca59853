package node

// The agent's write: through the write path of the cluster instance it
// runs now (node/writes, built by node/instance).

import (
	"context"
	"encoding/json"

	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// write commits cmd through the leader and returns the FSM's result
// (writes.Writer.Write).
func (a *Agent) write(ctx context.Context, cmd command.Command) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return cl.Writer().Write(ctx, cmd)
}

// writeCmd is the agent's write as the loops' status sink.
func (a *Agent) writeCmd(ctx context.Context, cmd command.Command) error {
	_, err := a.write(ctx, cmd)
	return err
}
