package instance

// What an instance's parts make when asked: the write path, the keys, the
// leader's side of membership and of `node rm`, the removal question, a
// task's secrets and files, images and logs from peers. None holds state
// of its own beyond the instance's, so each is made per call: an instance
// built with only some parts (tests) has them too.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/taskfiles"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
	"github.com/shoal-org/shoal/runtime"
)

// Writer is the write path (node/writes).
func (cl *Instance) Writer() *writes.Writer {
	h := cl.Host
	return writes.New(writes.Config{
		NodeID: h.NodeID, ClusterID: cl.ID, Store: cl.Store, Raft: cl.Raft, Members: cl.Members,
		Log: h.Log, WriteTimeout: h.Config.WriteTimeout,
		Call: func(ctx context.Context, addr, method string, body, out any) error {
			return Call(ctx, addr, cl.Client, method, body, out, nil)
		},
		Dial: RPCDialer(cl.Client),
		KEK:  cl.kek,
		RotateToken: func(ctx context.Context) error {
			_, err := cl.Keeper().RotateSecret(ctx)
			return err
		},
	})
}

// Forward runs call against the current leader, retrying across leader
// changes until the write timeout (writes.Writer.Forward).
func (cl *Instance) Forward(ctx context.Context, call func(ctx context.Context, addr string) error) error {
	return cl.Writer().Forward(ctx, call)
}

// Keeper is this node's keys and certificate against the replicated
// record, the leader's key work, and the keys RPCs (node/keyring).
func (cl *Instance) Keeper() *keyring.Keeper {
	h := cl.Host
	return &keyring.Keeper{
		Self:  h.NodeID,
		Dir:   cl.dir(),
		Store: cl.Store,
		Raft:  cl.Raft,
		TLS:   cl.tls,
		Call: func(ctx context.Context, addr, method string, body, out any) error {
			return Call(ctx, addr, cl.Client, method, body, out, nil)
		},
		CertLifetime: h.Config.CertLifetime,
		Log:          h.Log,
		Forward:      cl.Forward,
		Authorize: func(peerID string, cmd command.Command) error {
			c, _ := writes.CallerOf(cl.Store, authz.Admin, peerID)
			return authz.Authorize(c, cmd, nil)
		},
		Alive: cl.IsAlive,
	}
}

// kek returns this node's KEK if it opens c's sealed fields.
func (cl *Instance) kek(c *consensus.ClusterState) ([]byte, error) {
	return keyring.KEKFor(cl.dir(), c)
}

// clusterCA opens the CA of the record with this node's KEK.
func (cl *Instance) clusterCA(c *consensus.ClusterState) (*pki.CA, error) {
	return keyring.ClusterCA(cl.dir(), c)
}

// Leader is the leader's side of membership (joining.Leader): admission,
// removal, the lost-log rejoin. The caller has checked that this node
// leads.
func (cl *Instance) Leader() *joining.Leader {
	h := cl.Host
	return &joining.Leader{
		Self:         h.NodeID,
		GossipAddr:   cl.selfGossipAddr(),
		Store:        cl.Store,
		Raft:         cl.Raft, // a join is not erased by a restore: Apply holds the proposal gate
		Alive:        cl.IsAlive,
		Peers:        cl.Members.PeerAddrs,
		CA:           cl.clusterCA,
		PullKEK:      cl.Keeper().PullKEK,
		AdmitID:      cl.Keeper().AdmitID,
		CertLifetime: h.Config.CertLifetime,
		Epoch:        cl.Fence.Local(),
		Removing:     &cl.removing,
		ApplyRemoval: func(ctx context.Context, rm *command.RemoveNode) error { return cl.Rotator().Remove(ctx, rm) },
		Log:          h.Log,
	}
}

// IsAlive reports whether gossip holds node id alive (this node always is).
func (cl *Instance) IsAlive(id string) bool {
	if id == cl.Host.NodeID {
		return true
	}
	_, ok := cl.Members.AliveSet()[id]
	return ok
}

// Rotator is the leader's side of `node rm`: the removal with the first
// step of a gossip key rotation, then its next steps (revocation.Rotator;
// its target key is kept in the instance so that it outlasts a Rotator).
func (cl *Instance) Rotator() *revocation.Rotator {
	h := cl.Host
	r := &revocation.Rotator{Self: h.NodeID, Store: cl.Store, Raft: cl.Raft, Target: &cl.keyTarget, Log: h.Log}
	if cl.Members != nil {
		r.Gossip = cl.Members
	}
	return r
}

// removal is the removed node's side of the removal question
// (revocation.Removal).
func (cl *Instance) removal() *revocation.Removal {
	h := cl.Host
	r := &revocation.Removal{
		Self:        h.NodeID,
		ClusterAddr: h.Config.ClusterAddr(),
		PKIDir:      keyring.PKIDir(cl.dir()),
		Store:       cl.Store,
		Call: func(ctx context.Context, addr string, cfg *tls.Config, method string, body, out any) error {
			return Call(ctx, addr, cfg, method, body, out, nil)
		},
		Log: h.Log,
	}
	if cl.Raft != nil {
		r.Raft = cl.Raft
	}
	if cl.Members != nil {
		r.Gossip = cl.Members
	}
	return r
}

// AskRemoved asks peers, first the ones in first, whether this node was
// removed, and names the witness that said so (revocation.Removal.Ask).
func (cl *Instance) AskRemoved(ctx context.Context, first []string) (by string, removed bool) {
	return cl.removal().Ask(ctx, first)
}

// caller is Call with the instance's TLS towards peers.
func (cl *Instance) caller() imagedist.Caller {
	return func(ctx context.Context, addr, method string, body, out any, stream func(io.Reader) error) error {
		return Call(ctx, addr, cl.Client, method, body, out, stream)
	}
}

// RemoteLogs streams a container's logs from node n into send.
func (cl *Instance) RemoteLogs(ctx context.Context, n *api.Node, containerID string, opts runtime.LogOptions, send func(api.LogLine) bool) error {
	return imagedist.RemoteLogs(ctx, cl.caller(), joinHostPort(n.Addr, n.ClusterPort), containerID, opts, send)
}

// RemoteLogsMulti streams the logs of containers of node n into send, on
// one connection per wire.MaxLogsContainers of them.
func (cl *Instance) RemoteLogsMulti(ctx context.Context, n *api.Node, containerIDs []string, opts runtime.LogOptions, send func(int, api.LogLine) bool) error {
	return imagedist.RemoteLogsMulti(ctx, cl.caller(), joinHostPort(n.Addr, n.ClusterPort), containerIDs, opts, send)
}

// EnsureImage makes ref available locally: already here, fetched from a
// ready peer that holds it, or pulled from its registry (imagedist.Ensure),
// and records in the cluster that this node now holds it.
func (cl *Instance) EnsureImage(ctx context.Context, ref string, creds imagedist.Creds) error {
	h := cl.Host
	src := imagedist.Source{Peer: func(nodeID string) (imagedist.Peer, bool) {
		if nodeID == h.NodeID {
			return imagedist.Peer{}, false
		}
		n, err := cl.Store.Node(nodeID)
		if err != nil || n.Status != api.NodeReady {
			return imagedist.Peer{}, false
		}
		return imagedist.Peer{Hostname: n.Hostname, Addr: joinHostPort(n.Addr, n.ClusterPort)}, true
	}}
	if rec, ok := handlers.FindClusterImage(cl.Store, ref); ok {
		src.Record = rec
	}
	return imagedist.Ensure(ctx, h.Images, cl.caller(), ref, src, creds, func(img api.Image, source string) {
		h.AnnounceImage(ctx, img, source)
	})
}

// taskFiles are the tasks' secret and config files (node/taskfiles).
func (cl *Instance) taskFiles() *taskfiles.Files {
	h := cl.Host
	return taskfiles.New(taskfiles.Config{
		// The run dir beside the socket (memory), never the data dir.
		Dir: filepath.Join(filepath.Dir(h.Config.Socket), "files-"+api.ShortID(h.NodeID)),
		Secrets: func(ctx context.Context, t *api.Task) (map[string][]byte, error) {
			return cl.fetchSecrets(ctx, t)
		},
		Replica:    cl.Store,
		Containers: h.Runtime,
		Logger:     h.Log,
	})
}

// fetchSecrets gets the secrets of task t (assigned to this node) from the
// leader, in memory.
func (cl *Instance) fetchSecrets(ctx context.Context, t *api.Task) (map[string][]byte, error) {
	resp, err := cl.askSecrets(ctx, wire.SecretsRequest{TaskID: t.ID})
	if err != nil {
		return nil, err
	}
	return resp.Secrets, nil
}

// fetchRegistryAuth gets the registry credentials of task t (assigned to
// this node) from the leader, in memory; nil when its spec has none.
func (cl *Instance) fetchRegistryAuth(ctx context.Context, t *api.Task) (*api.RegistryAuth, error) {
	if t.Spec.RegistryAuth == nil {
		return nil, nil
	}
	resp, err := cl.askSecrets(ctx, wire.SecretsRequest{TaskID: t.ID, RegistryAuth: true})
	if err != nil {
		return nil, fmt.Errorf("fetch from the leader: %w", err)
	}
	return resp.RegistryAuth, nil
}

// askSecrets asks the leader (this node, when it leads) for what req
// names (node/writes answers wire.MethodSecrets there).
func (cl *Instance) askSecrets(ctx context.Context, req wire.SecretsRequest) (*wire.SecretsResponse, error) {
	if cl.Raft.IsLeader() {
		resp, err := cl.secretsHere(req)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, consensus.ErrNotLeader) {
			return nil, err
		}
	}
	var resp wire.SecretsResponse
	err := cl.Forward(ctx, func(ctx context.Context, addr string) error {
		return Call(ctx, addr, cl.Client, wire.MethodSecrets, req, &resp, nil)
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// secretsHere answers req as this node's wire.MethodSecrets would: through
// the current instance, which is ErrNoCluster once this one stops.
func (cl *Instance) secretsHere(req wire.SecretsRequest) (*wire.SecretsResponse, error) {
	cur, err := cl.Host.Current()
	if err != nil {
		return nil, err
	}
	return cur.Writer().Secrets(cl.Host.NodeID, req)
}
