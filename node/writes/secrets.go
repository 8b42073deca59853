package writes

// Secrets and configs (issue 8; DESIGN.md, Trust model).
//
//   - `secret create` on any node sends the plaintext to the leader inside
//     the admin write (wire.MethodAdminWrite, mutual TLS); the leader, a voter,
//     seals it with the KEK (bound to the cluster and the secret's ID) and
//     proposes only the sealed form. Non-voters have no KEK and never see
//     more than ciphertext in their log and snapshots.
//   - A node that starts a task using secrets asks the leader for them
//     (wire.MethodSecrets, node/taskfiles). The leader answers only a node whose certificate names
//     the node the task is assigned to, for a task still meant to run, and
//     only the secrets that task's spec names (SecretsAllowed, pure and
//     table-tested). The node keeps them in memory and writes them to a
//     tmpfs of the task under its run dir (runtime/secretfs), which
//     the container gets as read-only bind mounts.
//   - Configs are not secret: they are stored as given and read from the
//     local replica, but materialised the same way and only for tasks
//     assigned here.
//   - The tmpfs of a task is unmounted once the task has no live container
//     on this node (node/taskfiles, Files.GC).

import (
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// aadUserSecret binds a sealed user secret to its cluster and its ID, so
// that one secret's ciphertext cannot be passed off as another's.
func aadUserSecret(clusterID, secretID string) []byte {
	return []byte("shoal user secret\x00" + clusterID + "\x00" + secretID)
}

// sealSecretOnLeader turns a forwarded CreateSecret carrying the plaintext
// into the command the log may hold: sealed with the KEK, plaintext gone.
func (w *Writer) sealSecretOnLeader(c command.CreateSecret) (command.CreateSecret, error) {
	if err := handlers.CheckObject(api.SecretCreateRequest{Name: c.Secret.Name, Data: c.Plaintext}, true); err != nil {
		return c, err
	}
	if len(c.Secret.Sealed) > 0 || c.Secret.ID == "" {
		return c, fmt.Errorf("%w: secret %s: the leader seals the data; send it in the clear with an ID", consensus.ErrInvalid, c.Secret.Name)
	}
	st := w.cfg.Store.Cluster()
	if st == nil {
		return c, consensus.ErrNotBootstrapped
	}
	kek, err := w.cfg.KEK(st)
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

// sameSecretOnLeader answers a CreateSecret with KeepIfSame: true when a
// secret of that name holds the same plaintext (nothing is to be
// proposed), an error when it holds other plaintext, false when there is
// none (create it). Only the leader holds the KEK that opens the stored
// one; the comparison is constant-time, and neither data leaves the leader.
func (w *Writer) sameSecretOnLeader(c command.CreateSecret) (bool, error) {
	s, err := w.cfg.Store.SecretByName(c.Secret.Name)
	if err != nil {
		return false, nil
	}
	st := w.cfg.Store.Cluster()
	if st == nil {
		return false, consensus.ErrNotBootstrapped
	}
	kek, err := w.cfg.KEK(st)
	if err != nil {
		return false, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("compare secret %s: %v", s.Name, err)}
	}
	data, err := pki.Open(kek, s.Sealed, aadUserSecret(st.ClusterID, s.ID))
	if err != nil {
		return false, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("open secret %s: %v", s.Name, err)}
	}
	if subtle.ConstantTimeCompare(data, c.Plaintext) != 1 {
		return false, fmt.Errorf("%w: %s", consensus.ErrInvalid, handlers.SameNameOtherData("secret", s.Name))
	}
	return true, nil
}

// ---- handing secrets to the node of a task ----

// SecretsAllowed is the authorization of wire.MethodSecrets: node peerID may have
// the secrets of task t only when t is assigned to it and still meant to
// run. It returns the names of the secrets the task's spec uses.
func SecretsAllowed(peerID string, t *api.Task) ([]string, error) {
	if peerID == "" {
		return nil, fmt.Errorf("%w: a node certificate is required", authz.ErrForbidden)
	}
	if t == nil {
		return nil, fmt.Errorf("%w: node %s asked for the secrets of an unknown task", authz.ErrForbidden, api.ShortID(peerID))
	}
	if t.NodeID != peerID {
		return nil, fmt.Errorf("%w: task %s is not assigned to node %s", authz.ErrForbidden, t.Name, api.ShortID(peerID))
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

// Secrets answers wire.MethodSecrets on the leader: node peerID asks for
// the secrets (or, with req.RegistryAuth, the registry credentials) of a
// task, which the leader opens for it when SecretsAllowed.
func (w *Writer) Secrets(peerID string, req wire.SecretsRequest) (*wire.SecretsResponse, error) {
	cl := w.cfg
	if !cl.Raft.IsLeader() {
		return nil, ErrNotLeader
	}
	t, _ := cl.Store.Task(req.TaskID)
	names, err := SecretsAllowed(peerID, t)
	if err != nil {
		w.log.Warn("refused secrets to a node", "node_id", api.ShortID(peerID), "task", req.TaskID, "err", err)
		return nil, err
	}
	st := cl.Store.Cluster()
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
	kek, err := cl.KEK(st)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	if req.RegistryAuth {
		if resp.RegistryAuth, err = OpenRegistryAuth(kek, st.ClusterID, t.ServiceID, t.Spec.RegistryAuth); err != nil {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("task %s: %v", t.Name, err)}
		}
		w.log.Info("handed registry credentials to the node of a task", "node_id", api.ShortID(peerID), "task", t.Name)
		return resp, nil
	}
	for _, n := range names {
		s, err := cl.Store.SecretByName(n)
		if err != nil {
			return nil, err
		}
		data, err := pki.Open(kek, s.Sealed, aadUserSecret(st.ClusterID, s.ID))
		if err != nil {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("open secret %s: %v", n, err)}
		}
		resp.Secrets[n] = data
	}
	w.log.Info("handed secrets to the node of a task", "node_id", api.ShortID(peerID), "task", t.Name, "secrets", len(names))
	return resp, nil
}
