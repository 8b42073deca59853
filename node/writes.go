package node

// The agent's side of node/writes: the write path of the running cluster
// (writer, built in cluster.go) under the names the rest of the agent
// calls. Each needs a cluster and says ErrNoCluster without one.

import (
	"context"
	"encoding/json"

	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/wire"
)

// write commits cmd through the leader and returns the FSM's result
// (writes.Writer.Write).
func (a *Agent) write(ctx context.Context, cmd command.Command) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.writer(cl).Write(ctx, cmd)
}

// applyLocal applies an encoded command of the leader's own on this node,
// which must lead.
func (a *Agent) applyLocal(ctx context.Context, enc []byte) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.writer(cl).ApplyLocal(ctx, enc)
}

// applyNodeCommand is wire.MethodApply on the leader.
func (a *Agent) applyNodeCommand(ctx context.Context, peerID string, enc []byte) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.writer(cl).ApplyNodeCommand(ctx, peerID, enc)
}

// applyAdmin is wire.MethodAdminWrite on the leader.
func (a *Agent) applyAdmin(ctx context.Context, peerID string, req wire.AdminWriteRequest) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.writer(cl).ApplyAdmin(ctx, peerID, req)
}

// readIndex is wire.MethodReadIndex on the leader.
func (a *Agent) readIndex(ctx context.Context) (uint64, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return 0, err
	}
	return a.writer(cl).ReadIndex(ctx)
}

// syncReplica waits until cl's store holds every write the leader had
// acknowledged when the call began (writes.Writer.SyncReplica).
func (a *Agent) syncReplica(ctx context.Context, cl *cluster) error {
	return a.writer(cl).SyncReplica(ctx)
}

// localWriteAllowed refuses admin actions on a worker's API socket.
func (a *Agent) localWriteAllowed(cl *cluster) error { return a.writer(cl).LocalWriteAllowed() }

// handleSecretsRPC is wire.MethodSecrets on the leader.
func (a *Agent) handleSecretsRPC(peerID string, req wire.SecretsRequest) (*wire.SecretsResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.writer(cl).Secrets(peerID, req)
}
