package node

// The files of a task: its secrets, fetched from the leader in memory
// (node/writes answers wire.MethodSecrets there, with SecretsAllowed), and
// its configs, read from the local replica, written to a tmpfs of the task
// under the run dir (runtime.PrepareFiles) that the container gets as
// read-only bind mounts; the tmpfs is unmounted once the task has no live
// container on this node (gcTaskFiles). The registry credentials of a task
// whose image must be pulled come the same way, in memory only.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

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

// taskFilesDir is the per-node root of the tasks' secret tmpfs mounts: in
// the run dir beside the socket (memory), never in the data dir.
func (a *Agent) taskFilesDir() string {
	return filepath.Join(filepath.Dir(a.cfg.Socket), "files-"+shortID(a.id.NodeID))
}

// prepareTaskFiles fetches the secrets and reads the configs of task t and
// writes them to the task's tmpfs; the mounts go into the container spec.
// A task without secrets or configs costs nothing.
func (a *Agent) prepareTaskFiles(ctx context.Context, cl *cluster, t *api.Task) ([]runtime.FileMount, error) {
	if len(t.Spec.Secrets) == 0 && len(t.Spec.Configs) == 0 {
		return nil, nil
	}
	var files []runtime.File
	if len(t.Spec.Secrets) > 0 {
		data, err := a.fetchSecrets(ctx, cl, t)
		if err != nil {
			return nil, fmt.Errorf("fetch secrets from the leader: %w", err)
		}
		for _, r := range t.Spec.Secrets {
			d, ok := data[r.Source]
			if !ok {
				return nil, fmt.Errorf("secret %s: the leader did not send it", r.Source)
			}
			files = append(files, runtime.File{Target: api.SecretTarget(r), Data: d,
				Mode: os.FileMode(api.FileMode(r)), UID: int(r.UID), GID: int(r.GID)})
		}
	}
	for _, r := range t.Spec.Configs {
		c, err := cl.store.ConfigByName(r.Source)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", r.Source, err)
		}
		files = append(files, runtime.File{Target: api.ConfigTarget(r), Data: c.Data,
			Mode: os.FileMode(api.FileMode(r)), UID: int(r.UID), GID: int(r.GID)})
	}
	mounts, err := runtime.PrepareFiles(filepath.Join(a.taskFilesDir(), t.ID), files)
	if err != nil {
		return nil, err
	}
	return mounts, nil
}

// gcTaskFiles unmounts the secret tmpfs of every task that has no live
// (created or running) container on this node and no start in flight
// (keep).
func (a *Agent) gcTaskFiles(keep map[string]bool) {
	root := a.taskFilesDir()
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, c := range a.rt.List() {
		// An exited container is never started again (a new task gets a
		// new container): its secrets leave memory with it.
		if c.TaskID != "" && c.State != api.ContainerExited {
			keep[c.TaskID] = true
		}
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if err := runtime.ReleaseFiles(filepath.Join(root, e.Name())); err != nil {
			a.log.Warn("release the secrets of a task", "task_id", shortID(e.Name()), "err", err)
		}
	}
}
