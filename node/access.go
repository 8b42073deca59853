package node

// The agent's side of authorization (node/authz holds the pure table): who
// a peer is in this node's replica (callerOf), what a peer may fetch from
// this node (the rule is imagedist.Guard's), and the Raft admission gate of
// the mux.

import (
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// callerOf describes a peer for authz.Authorize from cl's replica
// (writes.CallerOf).
func callerOf(cl *cluster, kind authz.Kind, peerID string) (authz.Caller, *api.Node) {
	return writes.CallerOf(cl.store, kind, peerID)
}

// adminOpAllowed is authz.AdminOpCheck for a peer, from this node's replica.
func (a *Agent) adminOpAllowed(peerID, op string) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	c, _ := callerOf(cl, authz.Admin, peerID)
	return authz.AdminOpCheck(op, c)
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
		Images: cl.store.Images,
		IsClusterImage: func(ref string) bool {
			_, ok := findClusterImage(cl, ref)
			return ok
		},
		Local:     a.images,
		Container: a.rt.Get,
	}
	return g.Check(req)
}

// raftGate is the mux's Raft admission check for the running raft r.
func raftGate(r *raftnode.Raft) func(peerID string) error {
	return func(peerID string) error {
		servers, err := r.Servers()
		if err != nil {
			return err
		}
		return authz.RaftPeerAllowed(servers, peerID, r.IsLeader(), r.LastContact(), time.Now())
	}
}
