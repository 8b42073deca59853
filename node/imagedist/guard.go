package imagedist

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// Guard is the rule of what a peer may read from this node, checked before
// a Serve function runs: what a node needs and no more — blobs and
// descriptors of images recorded in the cluster (a task anywhere may need
// them), and the logs of task containers (`service logs` from any node),
// never of one-off `shoal run` containers. Its fields are set before Check
// and not changed after.
type Guard struct {
	// Images lists the image records of the replica.
	Images func() []*api.Image
	// IsClusterImage reports whether ref (tag or ID prefix) names an
	// image record of the replica.
	IsClusterImage func(ref string) bool
	// Local is this node's image store, whose descriptors name the blobs
	// of records made without layer digests.
	Local Store
	// Container returns a local container by ID (runtime.Runtime.Get).
	Container func(id string) (api.Container, error)
}

// Check refuses a request for what the peer may not read with an error
// wrapping authz.ErrForbidden; other methods pass.
func (g Guard) Check(req wire.Request) error {
	switch req.Method {
	case wire.MethodBlob:
		var b wire.BlobRequest
		if err := json.Unmarshal(req.Body, &b); err != nil {
			return fmt.Errorf("malformed blob request: %w", err)
		}
		if !g.clusterBlob(b.Digest) {
			return fmt.Errorf("%w: blob %s belongs to no image of the cluster", authz.ErrForbidden, b.Digest)
		}
	case wire.MethodManifest:
		var m wire.ManifestRequest
		if err := json.Unmarshal(req.Body, &m); err != nil {
			return fmt.Errorf("malformed manifest request: %w", err)
		}
		if !g.IsClusterImage(m.Ref) {
			return fmt.Errorf("%w: image %s is not an image of the cluster", authz.ErrForbidden, m.Ref)
		}
	case wire.MethodLogs:
		var l wire.LogsRequest
		if err := json.Unmarshal(req.Body, &l); err != nil {
			return fmt.Errorf("malformed logs request: %w", err)
		}
		c, err := g.Container(l.ContainerID)
		if err != nil {
			return err
		}
		if c.TaskID == "" {
			return fmt.Errorf("%w: container %s is not a task's", authz.ErrForbidden, l.ContainerID)
		}
	case wire.MethodLogsMulti:
		// The shape only: each container is checked as it is opened
		// (TaskOnly), so one removed since does not end the others' lines.
		var l wire.LogsMultiRequest
		if err := json.Unmarshal(req.Body, &l); err != nil {
			return fmt.Errorf("malformed logs request: %w", err)
		}
		if n := len(l.ContainerIDs); n == 0 || n > wire.MaxLogsContainers {
			return fmt.Errorf("malformed logs request: %d containers, want 1 to %d", n, wire.MaxLogsContainers)
		}
	}
	return nil
}

// clusterBlob reports whether digest is the config or a layer of an image
// recorded in the cluster state.
func (g Guard) clusterBlob(digest string) bool {
	if digest == "" {
		return false
	}
	for _, img := range g.Images() {
		if img.ID == digest || slices.Contains(img.Layers, digest) {
			return true
		}
	}
	// Records made without layer digests: ask the local descriptors.
	for _, img := range g.Images() {
		raw, err := g.Local.Manifest(img.ID)
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

// TaskOnly wraps logs so that it reads only a task's container: MethodLogs'
// rule, for each container of a MethodLogsMulti request.
func (g Guard) TaskOnly(logs Logs) Logs {
	return func(ctx context.Context, id string, opts runtime.LogOptions) (<-chan api.LogLine, error) {
		c, err := g.Container(id)
		if err != nil {
			return nil, err
		}
		if c.TaskID == "" {
			return nil, fmt.Errorf("%w: container %s is not a task's", authz.ErrForbidden, id)
		}
		return logs(ctx, id, opts)
	}
}
