package node

// The agent's side of the cluster port (node/clusterport): which handler
// answers which RPC method, and the agent's parts the port is built with —
// its fence (node/epoch) for the Raft epoch handshake and its trackers of
// accepted and dialled connections (node/revocation), which a revocation closes.

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/wire"
)

// The protocol bytes and the connect bound of the cluster port, under the
// names this package's callers use.
const (
	protoRaft   = clusterport.ProtoRaft
	protoRPC    = clusterport.ProtoRPC
	dialTimeout = clusterport.DialTimeout
)

// peerDialer dials every connection of this process to a cluster port,
// tracked in dialedConns.
var peerDialer = clusterport.Dialer{Tracker: dialedConns}

// dialProto opens a TLS connection to a cluster port and selects a
// protocol; the connection is tracked in dialedConns until it is closed.
func dialProto(addr string, timeout time.Duration, cfg *tls.Config, proto byte) (*tls.Conn, error) {
	return peerDialer.Dial(addr, timeout, cfg, proto)
}

// callRPC performs one RPC against the cluster port at addr
// (clusterport.Dialer.Call).
func callRPC(ctx context.Context, addr string, cfg *tls.Config, method string, body any, out any, stream func(io.Reader) error) error {
	return peerDialer.Call(ctx, addr, cfg, method, body, out, stream)
}

// mux is the cluster port's mux with the tracker of the connections it
// accepted (revocation.Loop closes those of revoked peers).
type mux struct {
	*clusterport.Mux
	conns *revocation.Tracker
}

// newMux serves the cluster port on ln; fc is the epoch (nil: 0).
func newMux(ln net.Listener, tlsCfg *tls.Config, log *slog.Logger, rpc func(*tls.Conn), fc *fence) *mux {
	conns := revocation.NewTracker()
	return &mux{
		Mux: clusterport.NewMux(clusterport.MuxConfig{
			Listener: ln, TLS: tlsCfg, Log: log, RPC: rpc, Fence: fc, Tracker: conns,
		}),
		conns: conns,
	}
}

// newRaftLayer is Raft's transport over m; fc is the epoch (nil: 0).
func newRaftLayer(m *mux, client func() *tls.Config, fc *fence) *clusterport.RaftLayer {
	return &clusterport.RaftLayer{Mux: m.Mux, Client: client, Fence: fc, Dialer: peerDialer}
}

// rpcServer answers RPC connections, each handler running on ctx: the
// cluster's (startCluster), since stopping the cluster waits for them.
func (a *Agent) rpcServer(ctx context.Context) func(*tls.Conn) {
	return func(conn *tls.Conn) { clusterport.Serve(ctx, conn, a.rpcMethod) }
}

// rpcMethod is the handler of each RPC method; nil for an unknown one.
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
			return a.applyNodeCommand(ctx, peerID, req.Command)
		})
	case wire.MethodAdminWrite:
		return clusterport.Unary("admin write", func(ctx context.Context, peerID string, req wire.AdminWriteRequest) (any, error) {
			return a.applyAdmin(ctx, peerID, req)
		})
	case wire.MethodUsage:
		return clusterport.NoBody(func(context.Context, string) (any, error) { return a.handleUsageRPC() })
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
		return clusterport.NoBody(func(_ context.Context, peerID string) (any, error) { return a.handleKEKRPC(peerID) })
	case wire.MethodToken:
		return clusterport.Unary("token request", func(ctx context.Context, peerID string, req wire.TokenRequest) (any, error) {
			return a.handleTokenRPC(ctx, peerID, req)
		})
	case wire.MethodRenew:
		return clusterport.Unary("renew request", func(ctx context.Context, peerID string, req wire.RenewRequest) (any, error) {
			return a.handleRenewRPC(ctx, peerID, req)
		})
	case wire.MethodCARotate:
		return clusterport.NoBody(func(ctx context.Context, peerID string) (any, error) { return a.handleCARotateRPC(ctx, peerID) })
	case wire.MethodSecrets:
		return clusterport.Unary("secrets request", func(_ context.Context, peerID string, req wire.SecretsRequest) (any, error) {
			return a.handleSecretsRPC(peerID, req)
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
			a.writer(cl).ServeSnapshotRestore(ctx, call)
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

// serveFetch answers the methods a peer reads images and logs with, once
// fetchAllowed (access.go) lets it.
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
