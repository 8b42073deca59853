package node

// The agent's side of node/keyring that needs more than a cluster instance
// (whose Keeper, keys loop and keys RPCs are node/instance's and
// node/rpcserver's): the key a join signs its CSR with, kept in the data
// dir across joins, and `shoal ca rotate` on this node's API with the new
// token.

import (
	"context"
	"crypto/ecdsa"
	"net/http"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/keyring"
)

// joinKey is the key (and proof certificate) a join signs its CSR with
// (keyring.JoinKey).
func (a *Agent) joinKey() (*ecdsa.PrivateKey, []byte, error) {
	return keyring.JoinKey(a.cfg.DataDir, instance.Dir(a.cfg.DataDir), a.id.NodeID)
}

// rotateCA is `shoal ca rotate` on this node: the rotation on the leader
// and the wait for it (keyring.Keeper.RotateCAAndWait), then the new token.
func (a *Agent) rotateCA(ctx context.Context, wait time.Duration) (api.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.CARotateResponse{}, err
	}
	if err := cl.Writer().LocalWriteAllowed(); err != nil {
		return api.CARotateResponse{}, err
	}
	out, err := cl.Keeper().RotateCAAndWait(ctx, wait)
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
