package node

// The agent's side of a task's secrets and registry credentials: fetched
// from the leader in memory (node/writes answers wire.MethodSecrets there),
// for node/taskfiles (the task's tmpfs) and image pulls (ensureImage).

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/taskfiles"
	"github.com/shoal-org/shoal/node/wire"
)

// taskFiles makes the task files of cluster instance cl (node/taskfiles).
func (a *Agent) taskFiles(cl *cluster) *taskfiles.Files {
	return taskfiles.New(taskfiles.Config{
		Dir: a.taskFilesDir(),
		Secrets: func(ctx context.Context, t *api.Task) (map[string][]byte, error) {
			return a.fetchSecrets(ctx, cl, t)
		},
		Replica:    cl.store,
		Containers: a.rt,
		Logger:     a.log,
	})
}

// taskFilesDir is the per-node root of the tasks' secret tmpfs mounts: in
// the run dir beside the socket (memory), never in the data dir.
func (a *Agent) taskFilesDir() string {
	return filepath.Join(filepath.Dir(a.cfg.Socket), "files-"+api.ShortID(a.id.NodeID))
}

// fetchSecrets gets the secrets of task t (assigned to this node) from the
// leader, in memory.
func (a *Agent) fetchSecrets(ctx context.Context, cl *cluster, t *api.Task) (map[string][]byte, error) {
	resp, err := a.callSecretsRPC(ctx, cl, wire.SecretsRequest{TaskID: t.ID})
	if err != nil {
		return nil, err
	}
	return resp.Secrets, nil
}

// fetchRegistryAuth gets the registry credentials of task t (assigned to
// this node) from the leader, in memory; nil when its spec has none.
func (a *Agent) fetchRegistryAuth(ctx context.Context, cl *cluster, t *api.Task) (*api.RegistryAuth, error) {
	if t.Spec.RegistryAuth == nil {
		return nil, nil
	}
	resp, err := a.callSecretsRPC(ctx, cl, wire.SecretsRequest{TaskID: t.ID, RegistryAuth: true})
	if err != nil {
		return nil, fmt.Errorf("fetch from the leader: %w", err)
	}
	return resp.RegistryAuth, nil
}

// callSecretsRPC asks the leader (this node, when it leads) for what req
// names.
func (a *Agent) callSecretsRPC(ctx context.Context, cl *cluster, req wire.SecretsRequest) (*wire.SecretsResponse, error) {
	if cl.raft.IsLeader() {
		resp, err := a.handleSecretsRPC(a.id.NodeID, req)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, ErrNotLeader) {
			return nil, err
		}
	}
	var resp wire.SecretsResponse
	err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		return callRPC(ctx, addr, cl.client, wire.MethodSecrets, req, &resp, nil)
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}
