package node

// The agent's side of image distribution (node/imagedist): which peers may
// serve an image (the replica's record, ready nodes other than this one),
// the RPC calls with this cluster's TLS, and the record of an image this
// node got (announceImage, local.go).

import (
	"context"
	"io"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/runtime"
)

// caller is callRPC with the cluster's TLS towards peers.
func (cl *cluster) caller() imagedist.Caller {
	return func(ctx context.Context, addr, method string, body, out any, stream func(io.Reader) error) error {
		return callRPC(ctx, addr, cl.client, method, body, out, stream)
	}
}

// remoteLogs streams a container's logs from node n into send.
func (a *Agent) remoteLogs(ctx context.Context, cl *cluster, n *api.Node, containerID string, opts runtime.LogOptions, send func(api.LogLine) bool) error {
	return imagedist.RemoteLogs(ctx, cl.caller(), joinHostPort(n.Addr, n.ClusterPort), containerID, opts, send)
}

// ensureImage makes ref available locally: already here, fetched from a
// ready peer that holds it, or pulled from its registry (imagedist.Ensure),
// and records in the cluster that this node now holds it.
func (a *Agent) ensureImage(ctx context.Context, cl *cluster, ref string, creds imagedist.Creds) error {
	src := imagedist.Source{Peer: func(nodeID string) (imagedist.Peer, bool) {
		if nodeID == a.id.NodeID {
			return imagedist.Peer{}, false
		}
		n, err := cl.store.Node(nodeID)
		if err != nil || n.Status != api.NodeReady {
			return imagedist.Peer{}, false
		}
		return imagedist.Peer{Hostname: n.Hostname, Addr: joinHostPort(n.Addr, n.ClusterPort)}, true
	}}
	if rec, ok := findClusterImage(cl, ref); ok {
		src.Record = rec
	}
	return imagedist.Ensure(ctx, a.images, cl.caller(), ref, src, creds, func(img api.Image, source string) {
		a.announceImage(ctx, img, source)
	})
}
