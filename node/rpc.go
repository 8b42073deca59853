package node

// The agent's side of the cluster port: which handler answers which RPC
// method, each on the cluster instance the agent runs at the time of the
// call (node/instance), as the port's handlers always did.

import (
	"context"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// notInCluster is the refusal of the methods a node in no cluster cannot
// forward (join, the removal question), for callers that may hold no
// certificate.
var notInCluster = &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}

// rpcMethod is the handler of each RPC method; nil for an unknown one
// (clusterport.Methods): each asks the instance the agent runs at the time
// of the call.
func (a *Agent) rpcMethod(method string) clusterport.Handler {
	switch method {
	case wire.MethodPing:
		return clusterport.NoBody(func(context.Context, string) (any, error) {
			return map[string]string{"node_id": a.id.NodeID}, nil
		})
	case wire.MethodJoin:
		return clusterport.Unary("join request", func(ctx context.Context, _ string, req wire.JoinRequest) (any, error) {
			return a.handleJoinRPC(ctx, req)
		})
	case wire.MethodApply:
		return clusterport.Unary("apply request", func(ctx context.Context, peerID string, req wire.ApplyRequest) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Writer().ApplyNodeCommand(ctx, peerID, req.Command)
		})
	case wire.MethodAdminWrite:
		return clusterport.Unary("admin write", func(ctx context.Context, peerID string, req wire.AdminWriteRequest) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Writer().ApplyAdmin(ctx, peerID, req)
		})
	case wire.MethodUsage:
		return clusterport.NoBody(func(context.Context, string) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Usage(), nil
		})
	case wire.MethodReadIndex:
		return clusterport.NoBody(func(ctx context.Context, _ string) (any, error) {
			idx, err := a.readIndex(ctx)
			return wire.ReadIndexResponse{Index: idx}, err
		})
	case wire.MethodAdmin:
		return clusterport.Unary("admin request", func(ctx context.Context, peerID string, req wire.AdminRequest) (any, error) {
			if err := a.adminOpAllowed(peerID, req.Op); err != nil {
				return nil, err
			}
			return struct{}{}, a.handleAdminRPC(ctx, peerID, req)
		})
	case wire.MethodKEK:
		return clusterport.NoBody(func(_ context.Context, peerID string) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().HandKEK(peerID)
		})
	case wire.MethodToken:
		return clusterport.Unary("token request", func(ctx context.Context, peerID string, req wire.TokenRequest) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().AnswerToken(ctx, peerID, req)
		})
	case wire.MethodRenew:
		return clusterport.Unary("renew request", func(ctx context.Context, peerID string, req wire.RenewRequest) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().AnswerRenew(ctx, peerID, req)
		})
	case wire.MethodCARotate:
		return clusterport.NoBody(func(ctx context.Context, peerID string) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().AnswerCARotate(ctx, peerID)
		})
	case wire.MethodSecrets:
		return clusterport.Unary("secrets request", func(_ context.Context, peerID string, req wire.SecretsRequest) (any, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Writer().Secrets(peerID, req)
		})
	case wire.MethodRejoin:
		return clusterport.NoBody(func(ctx context.Context, peerID string) (any, error) {
			return struct{}{}, a.handleRejoinRPC(ctx, peerID)
		})
	case wire.MethodSnapshotRestore:
		return func(ctx context.Context, call *clusterport.Call) {
			cl, err := a.clusterOrErr()
			if err != nil {
				_ = call.Reply(nil, err)
				return
			}
			cl.Writer().ServeSnapshotRestore(ctx, call)
		}
	case wire.MethodRemoval:
		return clusterport.Unary("removal request", func(_ context.Context, _ string, req wire.RemovalRequest) (any, error) {
			return a.handleRemovalRPC(req)
		})
	case wire.MethodBlob, wire.MethodManifest, wire.MethodLogs:
		return a.serveFetch
	}
	return nil
}

// handleJoinRPC admits a node. Any node may receive it; it is forwarded to the
// leader, which admits it (joining.Leader.Admit).
func (a *Agent) handleJoinRPC(ctx context.Context, req wire.JoinRequest) (*wire.JoinResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, notInCluster
	}
	if !cl.Raft.IsLeader() {
		var resp wire.JoinResponse
		err := cl.Forward(ctx, func(ctx context.Context, addr string) error {
			return instance.Call(ctx, addr, cl.Client, wire.MethodJoin, req, &resp, nil)
		})
		if err != nil {
			return nil, err
		}
		return &resp, nil
	}
	return cl.Leader().Admit(ctx, req)
}

// readIndex is wire.MethodReadIndex on the leader.
func (a *Agent) readIndex(ctx context.Context) (uint64, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return 0, err
	}
	return cl.Writer().ReadIndex(ctx)
}

// adminOpAllowed is authz.AdminOpCheck for a peer, from this node's replica.
func (a *Agent) adminOpAllowed(peerID, op string) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	c, _ := writes.CallerOf(cl.Store, authz.Admin, peerID)
	return authz.AdminOpCheck(op, c)
}

// handleAdminRPC runs membership operations that only the leader may do
// (joining.Leader.Admin).
func (a *Agent) handleAdminRPC(ctx context.Context, peerID string, req wire.AdminRequest) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if !cl.Raft.IsLeader() {
		return ErrNotLeader
	}
	return cl.Leader().Admin(ctx, peerID, req)
}

// handleRejoinRPC runs on the leader for a node that lost its raft log
// (joining.Leader.Rejoin).
func (a *Agent) handleRejoinRPC(ctx context.Context, peerID string) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if !cl.Raft.IsLeader() {
		return ErrNotLeader
	}
	return cl.Leader().Rejoin(ctx, peerID)
}

// handleRemovalRPC answers "is node X with serial S removed?" from this node's
// replica (revocation.Answer). Callers need no certificate.
func (a *Agent) handleRemovalRPC(req wire.RemovalRequest) (*wire.RemovalResponse, error) {
	if err := revocation.CheckQuestion(req); err != nil {
		return nil, err
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, notInCluster
	}
	return revocation.Answer(cl.Store, req)
}

// serveFetch answers the methods a peer reads images and logs with, once
// fetchAllowed lets it.
func (a *Agent) serveFetch(ctx context.Context, call *clusterport.Call) {
	if err := a.fetchAllowed(call.Req); err != nil {
		a.log.Warn("refused a fetch from a node", "node_id", api.ShortID(call.PeerID), "method", call.Req.Method, "err", err)
		_ = call.Reply(nil, err)
		return
	}
	switch call.Req.Method {
	case wire.MethodBlob:
		imagedist.ServeBlob(a.images, call)
	case wire.MethodManifest:
		imagedist.ServeManifest(a.images, call)
	default:
		imagedist.ServeLogs(ctx, a.rt.Logs, call)
	}
}

// fetchAllowed limits what a peer may read from this node to what a node
// needs (imagedist.Guard), from this node's replica, image store and
// containers.
func (a *Agent) fetchAllowed(req wire.Request) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	g := imagedist.Guard{
		Images: cl.Store.Images,
		IsClusterImage: func(ref string) bool {
			_, ok := handlers.FindClusterImage(cl.Store, ref)
			return ok
		},
		Local:     a.images,
		Container: a.rt.Get,
	}
	return g.Check(req)
}
