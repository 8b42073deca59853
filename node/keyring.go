package node

// The agent's side of node/keyring (issue 7: keys where they belong): the
// keeper built from a cluster's parts (cluster.go runs its loop), the KEK
// helpers the agent's writes use, and the RPCs and routes that reach the
// keys — who may call them (membership, voters, admins) and forwarding to
// the leader are decided here, the key work is the keeper's.

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// keeper is cl's keyring.Keeper: this node's keys and certificate against
// the replicated record, and the leader's key work.
func (a *Agent) keeper(cl *cluster) *keyring.Keeper {
	return &keyring.Keeper{
		Self:  a.id.NodeID,
		Dir:   clusterDir(a.cfg.DataDir),
		Store: cl.store,
		Raft:  cl.raft,
		TLS:   cl.tls,
		Call: func(ctx context.Context, addr, method string, body, out any) error {
			return callRPC(ctx, addr, cl.client, method, body, out, nil)
		},
		CertLifetime: a.cfg.CertLifetime,
		Log:          a.log,
	}
}

// pkiDir is where a node's certificate, key and trusted CAs live.
func pkiDir(dataDir string) string { return keyring.PKIDir(clusterDir(dataDir)) }

func (a *Agent) saveKEK(kek []byte) error { return keyring.SaveKEK(clusterDir(a.cfg.DataDir), kek) }

// kekFor returns this node's KEK if it opens c's sealed fields.
func (a *Agent) kekFor(c *consensus.ClusterState) ([]byte, error) {
	return keyring.KEKFor(clusterDir(a.cfg.DataDir), c)
}

// clusterCA opens the CA of the record with this node's KEK.
func (a *Agent) clusterCA(c *consensus.ClusterState) (*pki.CA, error) {
	return keyring.ClusterCA(clusterDir(a.cfg.DataDir), c)
}

// joinSecret opens the join secret of the record with this node's KEK.
func (a *Agent) joinSecret(c *consensus.ClusterState) (string, error) {
	return keyring.JoinSecret(clusterDir(a.cfg.DataDir), c)
}

// joinKey is the key (and proof certificate) a join signs its CSR with
// (keyring.JoinKey).
func (a *Agent) joinKey() (*ecdsa.PrivateKey, []byte, error) {
	return keyring.JoinKey(a.cfg.DataDir, clusterDir(a.cfg.DataDir), a.id.NodeID)
}

// ---- RPC handlers ----

// handleKEKRPC hands the KEK to another voter (keyring.Keeper.HandKEK).
func (a *Agent) handleKEKRPC(peerID string) (*wire.KEKResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.keeper(cl).HandKEK(peerID)
}

// handleTokenRPC tells (or, on the leader, rotates) the join secret.
// Allowed callers: any node of the cluster's state — root on any node is
// an admin (DESIGN.md, trust model), so a node may print the token as it
// may forward any write.
func (a *Agent) handleTokenRPC(ctx context.Context, peerID string, req wire.TokenRequest) (*wire.TokenResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if _, err := cl.store.Node(peerID); err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", api.ShortID(peerID))}
	}
	if req.Rotate {
		if !cl.raft.IsLeader() {
			return nil, ErrNotLeader
		}
		// Rotating is an admin action: a worker's root may not do it.
		c, _ := callerOf(cl, authz.Admin, peerID)
		if err := authz.Authorize(c, fsm.RotateToken{}, nil); err != nil {
			return nil, err
		}
		secret, err := a.rotateSecretAsLeader(ctx, cl)
		if err != nil {
			return nil, err
		}
		return &wire.TokenResponse{Secret: secret}, nil
	}
	c := cl.store.Cluster()
	if c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	secret, err := a.joinSecret(c)
	if err != nil {
		if cl.raft.IsLeader() {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
		}
		return nil, ErrNotLeader // let the caller find a voter that can open it
	}
	return &wire.TokenResponse{Secret: secret}, nil
}

// rotateSecretAsLeader draws a new join secret, seals it and records it.
func (a *Agent) rotateSecretAsLeader(ctx context.Context, cl *cluster) (string, error) {
	return a.keeper(cl).RotateSecret(ctx)
}

// currentSecret returns the join secret, opened here when this node holds
// the KEK, else asked of the leader.
func (a *Agent) currentSecret(ctx context.Context, cl *cluster, c *consensus.ClusterState) (string, error) {
	if s, err := a.joinSecret(c); err == nil {
		return s, nil
	}
	var resp wire.TokenResponse
	err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		return callRPC(ctx, addr, cl.client, wire.MethodToken, wire.TokenRequest{}, &resp, nil)
	})
	if err != nil {
		return "", fmt.Errorf("ask the leader for the join token: %w", err)
	}
	return resp.Secret, nil
}

// rotateSecret rotates the join secret on the leader (here or remote).
func (a *Agent) rotateSecret(ctx context.Context, cl *cluster) error {
	if cl.raft.IsLeader() {
		_, err := a.rotateSecretAsLeader(ctx, cl)
		return err
	}
	return a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		return callRPC(ctx, addr, cl.client, wire.MethodToken, wire.TokenRequest{Rotate: true}, nil, nil)
	})
}

// handleRenewRPC signs a new certificate for the caller. Allowed callers:
// the node itself only — the certificate is issued for the caller's node ID
// (from its verified, unrevoked certificate), and the CSR must ask for that
// ID; the node must still be in the cluster's state. Leader only.
func (a *Agent) handleRenewRPC(ctx context.Context, peerID string, req wire.RenewRequest) (*wire.RenewResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	return a.keeper(cl).Issue(ctx, peerID, req.CSR)
}

// ---- CA rotation ----

// handleCARotateRPC starts a CA rotation on the leader. Allowed callers:
// any node of the cluster's state (an admin operation from any node's API,
// as forwarded writes are).
func (a *Agent) handleCARotateRPC(ctx context.Context, peerID string) (*wire.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if _, err := cl.store.Node(peerID); err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", api.ShortID(peerID))}
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	fp, err := a.keeper(cl).RotateCA(ctx)
	if err != nil {
		return nil, err
	}
	return &wire.CARotateResponse{CAFingerprint: fp}, nil
}

// rotateCA is `shoal ca rotate` on this node: start the rotation on the
// leader, then wait (up to wait) until this node's replica shows it done.
func (a *Agent) rotateCA(ctx context.Context, wait time.Duration) (api.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.CARotateResponse{}, err
	}
	var fp string
	if cl.raft.IsLeader() {
		fp, err = a.keeper(cl).RotateCA(ctx)
	} else {
		var resp wire.CARotateResponse
		err = a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			return callRPC(ctx, addr, cl.client, wire.MethodCARotate, nil, &resp, nil)
		})
		fp = resp.CAFingerprint
	}
	if err != nil {
		return api.CARotateResponse{}, err
	}
	out := api.CARotateResponse{CAFingerprint: fp}
	out.Complete, out.Pending = a.keeper(cl).WaitRotation(ctx, fp, wait)
	tok, err := a.tokenResponse(ctx)
	if err != nil {
		return out, err
	}
	out.Token, out.JoinCommand = tok.Token, tok.JoinCommand
	return out, nil
}

// handleCARotate is POST /v1/ca/rotate[?wait=D].
func (a *Agent) handleCARotate(w http.ResponseWriter, r *http.Request) (any, error) {
	wait := time.Minute
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			return nil, httpapi.BadRequest("wait %q: want a duration between 1s and 10m", s)
		}
		wait = d
	}
	return a.rotateCA(r.Context(), wait)
}

// ---- node IDs at join ----

// admitJoinID decides whether a joiner may have the node ID it asks for
// (keyring.AdmitJoinID, from what this leader's replica, Raft
// configuration and gossip say of the ID) and returns the serials to
// revoke when it may.
func (a *Agent) admitJoinID(cl *cluster, c *consensus.ClusterState, req wire.JoinRequest) ([]string, error) {
	in := keyring.JoinClaim{Req: req, Leader: req.NodeID == a.id.NodeID}
	if n, err := cl.store.Node(req.NodeID); err == nil {
		in.Record = n
		in.Alive = n.Status == api.NodeReady && a.isAlive(cl, req.NodeID)
	}
	if servers, err := cl.raft.Servers(); err == nil {
		for _, s := range servers {
			if s.ID == req.NodeID {
				in.InRaft = true
			}
		}
	}
	revoke, err := keyring.AdmitJoinID(in, c, cl.store.IsRevoked)
	var taken *keyring.IDTakenError
	if errors.As(err, &taken) {
		a.log.Warn("join refused: node ID taken", "node_id", api.ShortID(req.NodeID), "err", taken.Err)
		return nil, taken.Refusal()
	}
	return revoke, err
}
