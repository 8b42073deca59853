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
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

// aadUserSecret binds a sealed user secret to its cluster and its ID, so
// that one secret's ciphertext cannot be passed off as another's.
func aadUserSecret(clusterID, secretID string) []byte {
	return []byte("shoal user secret\x00" + clusterID + "\x00" + secretID)
}

func (x apiAgent) Secrets() ([]api.Secret, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	out := []api.Secret{}
	for _, s := range cl.store.Secrets() {
		out = append(out, displaySecret(s))
	}
	return out, nil
}

func (x apiAgent) Secret(ref string) (api.Secret, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return api.Secret{}, err
	}
	s, err := cl.store.ResolveSecret(ref)
	if err != nil {
		return api.Secret{}, err
	}
	return displaySecret(s), nil
}

func (x apiAgent) Configs() ([]api.Config, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	out := []api.Config{}
	for _, c := range cl.store.Configs() {
		d := displayConfig(c)
		d.Data = nil
		out = append(out, d)
	}
	return out, nil
}

func (x apiAgent) Config(ref string) (api.Config, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return api.Config{}, err
	}
	c, err := cl.store.ResolveConfig(ref)
	if err != nil {
		return api.Config{}, err
	}
	return displayConfig(c), nil
}

func (x apiAgent) CheckObject(req api.SecretCreateRequest, secret bool) error {
	return checkObject(req, secret)
}

func displaySecret(s *consensus.Secret) api.Secret {
	return api.Secret{ID: s.ID, Name: s.Name, CreatedAt: s.CreatedAt, Labels: s.Labels}
}

func displayConfig(c *consensus.ConfigObject) api.Config {
	return api.Config{ID: c.ID, Name: c.Name, CreatedAt: c.CreatedAt, Size: len(c.Data), Labels: c.Labels, Data: c.Data}
}

func kindName(secret bool) string {
	if secret {
		return "secret"
	}
	return "config"
}

// checkObject validates a create request: name and size.
func checkObject(req api.SecretCreateRequest, secret bool) error {
	kind := kindName(secret)
	if p := api.ObjectNameProblem(req.Name); p != "" {
		return fmt.Errorf("%w: %s name %q: %s", consensus.ErrInvalid, kind, req.Name, p)
	}
	if len(req.Data) == 0 {
		return fmt.Errorf("%w: %s %s is empty", consensus.ErrInvalid, kind, req.Name)
	}
	if len(req.Data) > api.MaxSecretSize {
		return fmt.Errorf("%w: %s %s is %d bytes: at most %d (500 KiB) allowed", consensus.ErrInvalid, kind, req.Name, len(req.Data), api.MaxSecretSize)
	}
	return nil
}

func (x apiAgent) CreateObject(ctx context.Context, req api.SecretCreateRequest, secret bool) (any, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	kind := kindName(secret)
	var cmd consensus.Command
	id, now := newID(), time.Now().UTC()
	if secret {
		if _, err := cl.store.SecretByName(req.Name); err == nil {
			return nil, httpapi.BadRequest("a secret named %s already exists (secrets are immutable: remove it first, or use a new name)", req.Name)
		}
		cmd = &consensus.CreateSecret{Secret: consensus.Secret{ID: id, Name: req.Name, CreatedAt: now, Size: len(req.Data), Labels: req.Labels},
			Plaintext: req.Data}
	} else {
		if _, err := cl.store.ConfigByName(req.Name); err == nil {
			return nil, httpapi.BadRequest("a config named %s already exists (configs are immutable: remove it first, or use a new name)", req.Name)
		}
		cmd = &consensus.CreateConfig{Config: consensus.ConfigObject{ID: id, Name: req.Name, CreatedAt: now, Labels: req.Labels, Data: req.Data}}
	}
	if _, err := a.write(ctx, cmd); err != nil {
		return nil, fmt.Errorf("create %s %s: %w", kind, req.Name, err)
	}
	var out any
	a.waitLocal(ctx, cl, func() bool {
		if secret {
			s, err := cl.store.ResolveSecret(id)
			if err == nil {
				out = displaySecret(s)
			}
			return err == nil
		}
		c, err := cl.store.ResolveConfig(id)
		if err == nil {
			d := displayConfig(c)
			d.Data = nil
			out = d
		}
		return err == nil
	})
	if out == nil { // committed, but this replica is slow: answer from the request
		out = api.Secret{ID: id, Name: req.Name, CreatedAt: now}
		if !secret {
			out = api.Config{ID: id, Name: req.Name, CreatedAt: now, Size: len(req.Data)}
		}
	}
	return out, nil
}

func (x apiAgent) RemoveObject(ctx context.Context, ref string, secret bool) error {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	var cmd consensus.Command
	if secret {
		s, err := cl.store.ResolveSecret(ref)
		if err != nil {
			return err
		}
		cmd = &consensus.DeleteSecret{ID: s.ID}
	} else {
		c, err := cl.store.ResolveConfig(ref)
		if err != nil {
			return err
		}
		cmd = &consensus.DeleteConfig{ID: c.ID}
	}
	_, err = a.write(ctx, cmd)
	return err
}

// sealSecretOnLeader turns a forwarded CreateSecret carrying the plaintext
// into the command the log may hold: sealed with the KEK, plaintext gone.
func (a *Agent) sealSecretOnLeader(cl *cluster, c consensus.CreateSecret) (consensus.CreateSecret, error) {
	if err := checkObject(api.SecretCreateRequest{Name: c.Secret.Name, Data: c.Plaintext}, true); err != nil {
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

// checkFileRefs validates the secret and config references of a spec
// against the replica: well formed, targets unique, objects present.
func checkFileRefs(store *consensus.Store, spec api.ServiceSpec) error {
	targets := map[string]bool{}
	check := func(refs []api.FileReference, secret bool) error {
		kind := kindName(secret)
		for _, r := range refs {
			if p := api.FileReferenceProblem(r, secret); p != "" {
				return fmt.Errorf("%s %s: %s", kind, r.Source, p)
			}
			t := api.ConfigTarget(r)
			if secret {
				t = api.SecretTarget(r)
			}
			if targets[t] {
				return fmt.Errorf("%s %s: target %s is used twice", kind, r.Source, t)
			}
			targets[t] = true
			var err error
			if secret {
				_, err = store.SecretByName(r.Source)
			} else {
				_, err = store.ConfigByName(r.Source)
			}
			if err != nil {
				return fmt.Errorf("%s %s not found: create it first (`shoal %s create %s FILE`)", kind, r.Source, kind, r.Source)
			}
		}
		return nil
	}
	if err := check(spec.Secrets, true); err != nil {
		return err
	}
	return check(spec.Configs, false)
}
