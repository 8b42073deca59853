package node

// Secrets and configs (issue 8; DESIGN.md, Trust model).
//
//   - `secret create` on any node sends the plaintext to the leader inside
//     the admin write (wire.MethodAdminWrite, mutual TLS); the leader, a voter,
//     seals it with the KEK (bound to the cluster and the secret's ID) and
//     proposes only the sealed form. Non-voters have no KEK and never see
//     more than ciphertext in their log and snapshots.
//   - A node that starts a task using secrets asks the leader for them
//     (wire.MethodSecrets). The leader answers only a node whose certificate names
//     the node the task is assigned to, for a task still meant to run, and
//     only the secrets that task's spec names (secretsAllowed, pure and
//     table-tested). The node keeps them in memory and writes them to a
//     tmpfs of the task under its run dir (runtime.PrepareFiles), which
//     the container gets as read-only bind mounts.
//   - Configs are not secret: they are stored as given and read from the
//     local replica, but materialised the same way and only for tasks
//     assigned here.
//   - The tmpfs of a task is unmounted once the task has no live container
//     on this node (gcTaskFiles).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

// aadUserSecret binds a sealed user secret to its cluster and its ID, so
// that one secret's ciphertext cannot be passed off as another's.
func aadUserSecret(clusterID, secretID string) []byte {
	return []byte("shoal user secret\x00" + clusterID + "\x00" + secretID)
}

// sealSecretOnLeader turns a forwarded CreateSecret carrying the plaintext
// into the command the log may hold: sealed with the KEK, plaintext gone.
func (a *Agent) sealSecretOnLeader(cl *cluster, c consensus.CreateSecret) (consensus.CreateSecret, error) {
	if err := handlers.CheckObject(api.SecretCreateRequest{Name: c.Secret.Name, Data: c.Plaintext}, true); err != nil {
		return c, err
	}
	if len(c.Secret.Sealed) > 0 || c.Secret.ID == "" {
		return c, fmt.Errorf("%w: secret %s: the leader seals the data; send it in the clear with an ID", consensus.ErrInvalid, c.Secret.Name)
	}
	st := cl.store.Cluster()
	if st == nil {
		return c, consensus.ErrNotBootstrapped
	}
	kek, err := a.kekFor(st)
	if err != nil {
		return c, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("seal secret %s: %v", c.Secret.Name, err)}
	}
	sealed, err := pki.Seal(kek, c.Plaintext, aadUserSecret(st.ClusterID, c.Secret.ID))
	if err != nil {
		return c, fmt.Errorf("seal secret %s: %w", c.Secret.Name, err)
	}
	c.Secret.Size = len(c.Plaintext)
	c.Secret.Sealed = sealed
	c.Secret.KEKID = pki.KEKID(kek)
	c.Plaintext = nil
	return c, nil
}

// ---- handing secrets to the node of a task ----

// secretsAllowed is the authorization of wire.MethodSecrets: node peerID may have
// the secrets of task t only when t is assigned to it and still meant to
// run. It returns the names of the secrets the task's spec uses.
func secretsAllowed(peerID string, t *api.Task) ([]string, error) {
	if peerID == "" {
		return nil, fmt.Errorf("%w: a node certificate is required", authz.ErrForbidden)
	}
	if t == nil {
		return nil, fmt.Errorf("%w: node %s asked for the secrets of an unknown task", authz.ErrForbidden, shortID(peerID))
	}
	if t.NodeID != peerID {
		return nil, fmt.Errorf("%w: task %s is not assigned to node %s", authz.ErrForbidden, t.Name, shortID(peerID))
	}
	if t.DesiredState != api.TaskRunning || api.TaskTerminal(t.State) {
		return nil, fmt.Errorf("%w: task %s is not meant to run", authz.ErrForbidden, t.Name)
	}
	var names []string
	for _, r := range t.Spec.Secrets {
		if !slices.Contains(names, r.Source) {
			names = append(names, r.Source)
		}
	}
	return names, nil
}

// handleSecretsRPC answers wire.MethodSecrets on the leader.
func (a *Agent) handleSecretsRPC(peerID string, req wire.SecretsRequest) (*wire.SecretsResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	t, _ := cl.store.Task(req.TaskID)
	names, err := secretsAllowed(peerID, t)
	if err != nil {
		a.log.Warn("refused secrets to a node", "node_id", shortID(peerID), "task", req.TaskID, "err", err)
		return nil, err
	}
	st := cl.store.Cluster()
	if st == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	resp := &wire.SecretsResponse{Secrets: map[string][]byte{}}
	if req.RegistryAuth {
		names = nil
		if t.Spec.RegistryAuth == nil {
			return resp, nil
		}
	} else if len(names) == 0 {
		return resp, nil
	}
	kek, err := a.kekFor(st)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	if req.RegistryAuth {
		if resp.RegistryAuth, err = openRegistryAuth(kek, st.ClusterID, t.ServiceID, t.Spec.RegistryAuth); err != nil {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("task %s: %v", t.Name, err)}
		}
		a.log.Info("handed registry credentials to the node of a task", "node_id", shortID(peerID), "task", t.Name)
		return resp, nil
	}
	for _, n := range names {
		s, err := cl.store.SecretByName(n)
		if err != nil {
			return nil, err
		}
		data, err := pki.Open(kek, s.Sealed, aadUserSecret(st.ClusterID, s.ID))
		if err != nil {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("open secret %s: %v", n, err)}
		}
		resp.Secrets[n] = data
	}
	a.log.Info("handed secrets to the node of a task", "node_id", shortID(peerID), "task", t.Name, "secrets", len(names))
	return resp, nil
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
