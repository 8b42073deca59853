package node

// The agent's side of authorization (node/authz holds the pure table): who
// a peer is in this node's replica (callerOf), what a peer may fetch from this node,
// and the Raft admission gate of the mux.

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
	"github.com/shoal-org/shoal/runtime/image"
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
// needs: blobs and descriptors of images recorded in the cluster (a task
// anywhere may need them), and the logs of task containers (`service logs`
// from any node), never of one-off `shoal run` containers.
func (a *Agent) fetchAllowed(req wire.Request) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	switch req.Method {
	case wire.MethodBlob:
		var b wire.BlobRequest
		if err := json.Unmarshal(req.Body, &b); err != nil {
			return fmt.Errorf("malformed blob request: %w", err)
		}
		if !a.clusterBlob(cl, b.Digest) {
			return fmt.Errorf("%w: blob %s belongs to no image of the cluster", authz.ErrForbidden, b.Digest)
		}
	case wire.MethodManifest:
		var m wire.ManifestRequest
		if err := json.Unmarshal(req.Body, &m); err != nil {
			return fmt.Errorf("malformed manifest request: %w", err)
		}
		if _, ok := findClusterImage(cl, m.Ref); !ok {
			return fmt.Errorf("%w: image %s is not an image of the cluster", authz.ErrForbidden, m.Ref)
		}
	case wire.MethodLogs:
		var l wire.LogsRequest
		if err := json.Unmarshal(req.Body, &l); err != nil {
			return fmt.Errorf("malformed logs request: %w", err)
		}
		c, err := a.rt.Get(l.ContainerID)
		if err != nil {
			return err
		}
		if c.TaskID == "" {
			return fmt.Errorf("%w: container %s is not a task's", authz.ErrForbidden, l.ContainerID)
		}
	}
	return nil
}

// clusterBlob reports whether digest is the config or a layer of an image
// recorded in the cluster state.
func (a *Agent) clusterBlob(cl *cluster, digest string) bool {
	if digest == "" {
		return false
	}
	for _, img := range cl.store.Images() {
		if img.ID == digest || slices.Contains(img.Layers, digest) {
			return true
		}
	}
	// Records made without layer digests: ask the local descriptors.
	for _, img := range cl.store.Images() {
		raw, err := a.images.Manifest(img.ID)
		if err != nil {
			continue
		}
		d, err := image.ParseDescriptor(raw)
		if err == nil && slices.Contains(d.Blobs(), digest) {
			return true
		}
	}
	return false
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
