package instance

// Port 2377 as this process uses it (node/clusterport is the port): every
// connection it dials is tracked in dialedConns and every connection an
// instance's mux accepts in that mux's tracker, so that the instance's
// revocation loop (node/revocation) can close those of revoked peers; the
// mux and Raft's transport present the instance's fence (node/epoch) in the
// epoch handshake.

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/revocation"
)

// dialedConns tracks every connection this process dialled to a cluster
// port (Dial, Call); serials are random 128-bit numbers, so agents sharing a
// process (unit tests) do not close each other's connections.
var dialedConns = revocation.NewTracker()

// peerDialer dials every connection of this process to a cluster port,
// tracked in dialedConns.
var peerDialer = clusterport.Dialer{Tracker: dialedConns}

// Dial opens a TLS connection to a cluster port and selects a protocol
// (clusterport.ProtoRPC, ProtoRaft); the connection is tracked until it is
// closed.
func Dial(addr string, timeout time.Duration, cfg *tls.Config, proto byte) (*tls.Conn, error) {
	return peerDialer.Dial(addr, timeout, cfg, proto)
}

// Call performs one RPC against the cluster port at addr
// (clusterport.Dialer.Call) on a tracked connection.
func Call(ctx context.Context, addr string, cfg *tls.Config, method string, body any, out any, stream func(io.Reader) error) error {
	return peerDialer.Call(ctx, addr, cfg, method, body, out, stream)
}

// JoinCall is Call for a join: the connect waits up to
// joining.ConnectTimeout for the leader's handshake instead of
// clusterport.DialTimeout.
func JoinCall(ctx context.Context, addr string, cfg *tls.Config, method string, body any, out any) error {
	d := peerDialer
	d.ConnectTimeout = joining.ConnectTimeout
	return d.Call(ctx, addr, cfg, method, body, out, nil)
}

// RPCDialer opens tracked RPC connections to cluster ports with cfg.
func RPCDialer(cfg *tls.Config) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := Dial(addr, clusterport.DialTimeout, cfg, clusterport.ProtoRPC)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// Mux is the cluster port's mux with the tracker of the connections it
// accepted (revocation.Loop closes those of revoked peers).
type Mux struct {
	*clusterport.Mux
	conns *revocation.Tracker
}

// NewMux serves the cluster port on ln, handing RPC connections to rpc;
// fc is the epoch (nil: 0).
func NewMux(ln net.Listener, tlsCfg *tls.Config, log *slog.Logger, rpc func(*tls.Conn), fc *epoch.Fence) *Mux {
	conns := revocation.NewTracker()
	return &Mux{
		Mux: clusterport.NewMux(clusterport.MuxConfig{
			Listener: ln, TLS: tlsCfg, Log: log, RPC: rpc, Fence: fc, Tracker: conns,
		}),
		conns: conns,
	}
}

// NewRaftLayer is Raft's transport over m; fc is the epoch (nil: 0).
func NewRaftLayer(m *Mux, client func() *tls.Config, fc *epoch.Fence) *clusterport.RaftLayer {
	return &clusterport.RaftLayer{Mux: m.Mux, Client: client, Fence: fc, Dialer: peerDialer}
}

// RaftGate is the mux's Raft admission check for the running raft r
// (authz.RaftPeerAllowed). joining reports whether this node's replica
// is still short of the index the leader admitted it at (its join floor,
// node/revocation's JoinIndexFile): until then its Raft configuration is
// older than its admission and may not know the leader as a voter.
func RaftGate(r *raftnode.Raft, joining func() bool) func(peerID string) error {
	return func(peerID string) error {
		servers, err := r.Servers()
		if err != nil {
			return err
		}
		return authz.RaftPeerAllowed(servers, peerID, r.IsLeader(), joining(), r.LastContact(), time.Now())
	}
}
