package node

// The agent's side of node/keyring (issue 7: keys where they belong): the
// keeper built from a cluster's parts (cluster.go runs its loop), the KEK
// helpers the agent's writes use, and the RPCs and routes that reach the
// keys, each handed to the running cluster's keeper (who may call them is
// decided there, node/keyring rpc.go), and the HTTP route of `ca rotate`.

import (
	"context"
	"crypto/ecdsa"
	"net/http"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// keeper is cl's keyring.Keeper: this node's keys and certificate against
// the replicated record, the leader's key work, and the keys RPCs.
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
		Forward: func(ctx context.Context, call func(ctx context.Context, addr string) error) error {
			return a.forwardToLeader(ctx, cl, call)
		},
		Authorize: func(peerID string, cmd command.Command) error {
			c, _ := callerOf(cl, authz.Admin, peerID)
			return authz.Authorize(c, cmd, nil)
		},
		Alive: func(id string) bool { return a.isAlive(cl, id) },
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

// ---- RPC handlers and routes (keyring.Keeper, rpc.go) ----

// handleKEKRPC hands the KEK to another voter (keyring.Keeper.HandKEK).
func (a *Agent) handleKEKRPC(peerID string) (*wire.KEKResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.keeper(cl).HandKEK(peerID)
}

// handleTokenRPC is wire.MethodToken (keyring.Keeper.AnswerToken).
func (a *Agent) handleTokenRPC(ctx context.Context, peerID string, req wire.TokenRequest) (*wire.TokenResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.keeper(cl).AnswerToken(ctx, peerID, req)
}

// handleRenewRPC is wire.MethodRenew (keyring.Keeper.AnswerRenew).
func (a *Agent) handleRenewRPC(ctx context.Context, peerID string, req wire.RenewRequest) (*wire.RenewResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.keeper(cl).AnswerRenew(ctx, peerID, req)
}

// handleCARotateRPC is wire.MethodCARotate (keyring.Keeper.AnswerCARotate).
func (a *Agent) handleCARotateRPC(ctx context.Context, peerID string) (*wire.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return a.keeper(cl).AnswerCARotate(ctx, peerID)
}

// rotateCA is `shoal ca rotate` on this node: the rotation on the leader
// and the wait for it (keyring.Keeper.RotateCAAndWait), then the new token.
func (a *Agent) rotateCA(ctx context.Context, wait time.Duration) (api.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.CARotateResponse{}, err
	}
	if err := a.localWriteAllowed(cl); err != nil {
		return api.CARotateResponse{}, err
	}
	out, err := a.keeper(cl).RotateCAAndWait(ctx, wait)
	if err != nil {
		return api.CARotateResponse{}, err
	}
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
