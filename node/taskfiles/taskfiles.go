// Package taskfiles writes a task's secrets and configs to a tmpfs of its
// own that the container gets as read-only bind mounts, and unmounts it
// once the task has no live container on this node. The reconciler calls
// it (reconciler.Config.PrepareFiles, GCTaskFiles); it never imports node:
// the secrets fetch, the replica and the runtime come in through Config.
package taskfiles

// The files of a task: its secrets, fetched from the leader in memory
// (node/writes answers wire.MethodSecrets there, with SecretsAllowed), and
// its configs, read from the local replica, written to a tmpfs of the task
// under the run dir (runtime/secretfs.Prepare) that the container gets as
// read-only bind mounts; the tmpfs is unmounted once the task has no live
// container on this node (GC). The registry credentials of a task whose
// image must be pulled come the same way, in memory only (the agent's
// fetchRegistryAuth).

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/secretfs"
)

// Replica is what the files read of the local replica (*consensus.Store).
type Replica interface {
	ConfigByName(name string) (*consensus.ConfigObject, error)
}

// Containers is the part of *runtime.Runtime GC reads.
type Containers interface {
	List() []api.Container
}

// Config is what Files needs; every field is required. It is not changed
// after New.
type Config struct {
	// Dir is the per-node root of the tasks' tmpfs mounts: in the run dir
	// beside the socket (memory), never in the data dir.
	Dir string
	// Secrets fetches the secrets of task t (assigned to this node) from
	// the leader, in memory, by source name.
	Secrets    func(ctx context.Context, t *api.Task) (map[string][]byte, error)
	Replica    Replica
	Containers Containers
	Logger     *slog.Logger
}

// Files prepares and releases the tasks' files of one cluster instance.
// Its methods are safe to call from one goroutine at a time (the
// reconciler's).
type Files struct{ cfg Config }

// New returns the task files of cfg.
func New(cfg Config) *Files { return &Files{cfg: cfg} }

// Prepare fetches the secrets and reads the configs of task t and writes
// them to the task's tmpfs; the mounts go into the container spec. A task
// without secrets or configs costs nothing.
func (f *Files) Prepare(ctx context.Context, t *api.Task) ([]ocispec.FileMount, error) {
	if len(t.Spec.Secrets) == 0 && len(t.Spec.Configs) == 0 {
		return nil, nil
	}
	files, err := f.collect(ctx, t)
	if err != nil {
		return nil, err
	}
	mounts, err := secretfs.Prepare(filepath.Join(f.cfg.Dir, t.ID), files)
	if err != nil {
		return nil, err
	}
	return mounts, nil
}

// collect gathers the files of task t: its secrets from the leader, then
// its configs from the replica.
func (f *Files) collect(ctx context.Context, t *api.Task) ([]secretfs.File, error) {
	var files []secretfs.File
	if len(t.Spec.Secrets) > 0 {
		data, err := f.cfg.Secrets(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("fetch secrets from the leader: %w", err)
		}
		for _, r := range t.Spec.Secrets {
			d, ok := data[r.Source]
			if !ok {
				return nil, fmt.Errorf("secret %s: the leader did not send it", r.Source)
			}
			files = append(files, secretfs.File{Target: api.SecretTarget(r), Data: d,
				Mode: os.FileMode(api.FileMode(r)), UID: int(r.UID), GID: int(r.GID)})
		}
	}
	for _, r := range t.Spec.Configs {
		c, err := f.cfg.Replica.ConfigByName(r.Source)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", r.Source, err)
		}
		files = append(files, secretfs.File{Target: api.ConfigTarget(r), Data: c.Data,
			Mode: os.FileMode(api.FileMode(r)), UID: int(r.UID), GID: int(r.GID)})
	}
	return files, nil
}

// GC unmounts the tmpfs of every task that has no live (created or
// running) container on this node and no start in flight (keep, which it
// fills in).
func (f *Files) GC(keep map[string]bool) {
	root := f.cfg.Dir
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, c := range f.cfg.Containers.List() {
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
		if err := secretfs.Release(filepath.Join(root, e.Name())); err != nil {
			f.cfg.Logger.Warn("release the secrets of a task", "task_id", api.ShortID(e.Name()), "err", err)
		}
	}
}
