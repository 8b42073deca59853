// Package rpcserver answers the cluster port's RPC methods for the agent:
// which handler serves which method (wire's method names), and what each
// asks of the running cluster instance. Every call looks the instance up
// anew (Server.Current), as the agent's handlers always did: a call that
// arrives while an instance starts or stops is answered "not in a cluster",
// never by a half-built or stopped instance.
//
// Who may call what is decided where the work is done (node/writes,
// node/keyring, node/joining, imagedist.Guard); the cluster port
// (node/clusterport) has already refused every method but join, ping and
// the removal question to a caller without a certificate.
package rpcserver

import (
	"context"
	"log/slog"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// notInCluster is the refusal of the methods a node in no cluster cannot
// forward (join, the removal question), for callers that may hold no
// certificate.
var notInCluster = &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}

// Server answers the RPC methods of one agent.
type Server struct {
	NodeID string
	// Current is the cluster instance the agent runs now, or the agent's
	// ErrNoCluster.
	Current func() (*instance.Instance, error)
	// Images and Runtime serve what peers fetch: blobs, manifests, logs
	// (nil in tests that fetch nothing).
	Images  *image.Store
	Runtime *runtime.Runtime
	Log     *slog.Logger
}

// Method is the handler of each RPC method; nil for an unknown one
// (clusterport.Methods).
func (s *Server) Method(method string) clusterport.Handler {
	switch method {
	case wire.MethodPing:
		return clusterport.NoBody(func(context.Context, string) (any, error) {
			return map[string]string{"node_id": s.NodeID}, nil
		})
	case wire.MethodJoin:
		return clusterport.Unary("join request", func(ctx context.Context, _ string, req wire.JoinRequest) (any, error) {
			return s.join(ctx, req)
		})
	case wire.MethodApply:
		return clusterport.Unary("apply request", func(ctx context.Context, peerID string, req wire.ApplyRequest) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Writer().ApplyNodeCommand(ctx, peerID, req.Command)
		})
	case wire.MethodAdminWrite:
		return clusterport.Unary("admin write", func(ctx context.Context, peerID string, req wire.AdminWriteRequest) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Writer().ApplyAdmin(ctx, peerID, req)
		})
	case wire.MethodUsage:
		return clusterport.NoBody(func(context.Context, string) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Usage(), nil
		})
	case wire.MethodReadIndex:
		return clusterport.NoBody(func(ctx context.Context, _ string) (any, error) {
			idx, err := s.readIndex(ctx)
			return wire.ReadIndexResponse{Index: idx}, err
		})
	case wire.MethodAdmin:
		return clusterport.Unary("admin request", func(ctx context.Context, peerID string, req wire.AdminRequest) (any, error) {
			if err := s.adminOpAllowed(peerID, req.Op); err != nil {
				return nil, err
			}
			return struct{}{}, s.admin(ctx, peerID, req)
		})
	case wire.MethodKEK:
		return clusterport.NoBody(func(_ context.Context, peerID string) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().HandKEK(peerID)
		})
	case wire.MethodToken:
		return clusterport.Unary("token request", func(ctx context.Context, peerID string, req wire.TokenRequest) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().AnswerToken(ctx, peerID, req)
		})
	case wire.MethodRenew:
		return clusterport.Unary("renew request", func(ctx context.Context, peerID string, req wire.RenewRequest) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().AnswerRenew(ctx, peerID, req)
		})
	case wire.MethodRenewConfirm:
		return clusterport.Unary("renew confirmation", func(ctx context.Context, peerID string, req wire.RenewConfirmRequest) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return struct{}{}, cl.Keeper().AnswerRenewConfirm(ctx, peerID, req)
		})
	case wire.MethodCARotate:
		return clusterport.NoBody(func(ctx context.Context, peerID string) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Keeper().AnswerCARotate(ctx, peerID)
		})
	case wire.MethodSecrets:
		return clusterport.Unary("secrets request", func(_ context.Context, peerID string, req wire.SecretsRequest) (any, error) {
			cl, err := s.Current()
			if err != nil {
				return nil, err
			}
			return cl.Writer().Secrets(peerID, req)
		})
	case wire.MethodRejoin:
		return clusterport.NoBody(func(ctx context.Context, peerID string) (any, error) {
			return struct{}{}, s.rejoin(ctx, peerID)
		})
	case wire.MethodSnapshotRestore:
		return func(ctx context.Context, call *clusterport.Call) {
			cl, err := s.Current()
			if err != nil {
				_ = call.Reply(nil, err)
				return
			}
			cl.Writer().ServeSnapshotRestore(ctx, call)
		}
	case wire.MethodRemoval:
		return clusterport.Unary("removal request", func(_ context.Context, _ string, req wire.RemovalRequest) (any, error) {
			return s.removal(req)
		})
	case wire.MethodBlob, wire.MethodManifest, wire.MethodLogs, wire.MethodLogsMulti:
		return s.serveFetch
	}
	return nil
}

// join admits a node. Any node may receive it; it is forwarded to the
// leader, which admits it (joining.Leader.Admit).
func (s *Server) join(ctx context.Context, req wire.JoinRequest) (*wire.JoinResponse, error) {
	cl, err := s.Current()
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
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	cl, err := s.Current()
	if err != nil {
		return 0, err
	}
	return cl.Writer().ReadIndex(ctx)
}

// adminOpAllowed is authz.AdminOpCheck for a peer, from this node's replica.
func (s *Server) adminOpAllowed(peerID, op string) error {
	cl, err := s.Current()
	if err != nil {
		return err
	}
	c, _ := writes.CallerOf(cl.Store, authz.Admin, peerID)
	return authz.AdminOpCheck(op, c)
}

// admin runs membership operations that only the leader may do
// (joining.Leader.Admin).
func (s *Server) admin(ctx context.Context, peerID string, req wire.AdminRequest) error {
	cl, err := s.Current()
	if err != nil {
		return err
	}
	if !cl.Raft.IsLeader() {
		return consensus.ErrNotLeader
	}
	return cl.Leader().Admin(ctx, peerID, req)
}

// rejoin runs on the leader for a node that lost its raft log
// (joining.Leader.Rejoin).
func (s *Server) rejoin(ctx context.Context, peerID string) error {
	cl, err := s.Current()
	if err != nil {
		return err
	}
	if !cl.Raft.IsLeader() {
		return consensus.ErrNotLeader
	}
	return cl.Leader().Rejoin(ctx, peerID)
}

// removal answers "is node X with serial S removed?" from this node's
// replica (revocation.Answer). Callers need no certificate.
func (s *Server) removal(req wire.RemovalRequest) (*wire.RemovalResponse, error) {
	if err := revocation.CheckQuestion(req); err != nil {
		return nil, err
	}
	cl, err := s.Current()
	if err != nil {
		return nil, notInCluster
	}
	return revocation.Answer(cl.Store, req)
}

// serveFetch answers the methods a peer reads images and logs with, once
// fetchAllowed lets it.
func (s *Server) serveFetch(ctx context.Context, call *clusterport.Call) {
	if err := s.fetchAllowed(call.Req); err != nil {
		s.Log.Warn("refused a fetch from a node", "node_id", api.ShortID(call.PeerID), "method", call.Req.Method, "err", err)
		_ = call.Reply(nil, err)
		return
	}
	switch call.Req.Method {
	case wire.MethodBlob:
		imagedist.ServeBlob(s.Images, call)
	case wire.MethodManifest:
		imagedist.ServeManifest(s.Images, call)
	case wire.MethodLogsMulti:
		imagedist.ServeLogsMulti(ctx, imagedist.Guard{Container: s.Runtime.Get}.TaskOnly(s.Runtime.Logs), call)
	default:
		imagedist.ServeLogs(ctx, s.Runtime.Logs, call)
	}
}

// fetchAllowed limits what a peer may read from this node to what a node
// needs (imagedist.Guard), from this node's replica, image store and
// containers.
func (s *Server) fetchAllowed(req wire.Request) error {
	cl, err := s.Current()
	if err != nil {
		return err
	}
	g := imagedist.Guard{
		Images: cl.Store.Images,
		IsClusterImage: func(ref string) bool {
			_, ok := handlers.FindClusterImage(cl.Store, ref)
			return ok
		},
		Local:     s.Images,
		Container: s.Runtime.Get,
	}
	return g.Check(req)
}
