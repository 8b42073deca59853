package api

// Backups (`shoal snapshot save|restore`, `shoal init --from-snapshot`).
//
//	GET    /v1/snapshot                     → the snapshot file (application/octet-stream);
//	                                          header X-Shoal-Snapshot: SnapshotInfo as JSON
//	POST   /v1/snapshot/restore?force=1     (body: snapshot file) → SnapshotRestoreResponse
//	POST   /v1/init/snapshot                (body: snapshot file) → InitFromSnapshotResponse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// SnapshotInfoHeader is the response header of GET /v1/snapshot that
// describes the file in the body.
const SnapshotInfoHeader = "X-Shoal-Snapshot"

// SnapshotInfo describes a saved snapshot file.
type SnapshotInfo struct {
	// Format is the snapshot file format version.
	Format    int    `json:"format"`
	ClusterID string `json:"cluster_id"`
	// Index is the Raft index of the saved state: it holds every write
	// acknowledged before the save began.
	Index     uint64 `json:"index"`
	CreatedAt string `json:"created_at"`
	// Size is the body size in bytes; SHA256 its checksum (both in the
	// file's header too).
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Nodes    int    `json:"nodes"`
	Services int    `json:"services"`
	Tasks    int    `json:"tasks"`
}

// SnapshotRestoreResponse answers a restore: what the cluster now holds.
type SnapshotRestoreResponse struct {
	// ClusterID is the cluster restored onto; FileClusterID the one the
	// file was saved from (they differ only with force or init).
	ClusterID     string `json:"cluster_id"`
	FileClusterID string `json:"file_cluster_id"`
	// Index is the Raft index the restored state was installed at.
	Index uint64 `json:"index"`
	// Services are the names of the restored services.
	Services []string `json:"services"`
	// DroppedNodes are the file's nodes (hostnames) that are not members of
	// this cluster: left out; their tasks are placed again.
	DroppedNodes []string `json:"dropped_nodes"`
	DroppedTasks int      `json:"dropped_tasks"`
}

// InitFromSnapshotResponse answers POST /v1/init/snapshot.
type InitFromSnapshotResponse struct {
	InitResponse
	Restore SnapshotRestoreResponse `json:"restore"`
}

// SaveSnapshot streams a snapshot file of the cluster into w. The caller
// must discard what it wrote when an error comes back.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) (*SnapshotInfo, error) {
	resp, err := c.send(ctx, http.MethodGet, "/snapshot", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info SnapshotInfo
	if err := json.Unmarshal([]byte(resp.Header.Get(SnapshotInfoHeader)), &info); err != nil {
		return nil, fmt.Errorf("snapshot: malformed %s header: %w", SnapshotInfoHeader, err)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return nil, fmt.Errorf("snapshot: read: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, fmt.Errorf("snapshot: got %d of %d bytes", n, resp.ContentLength)
	}
	return &info, nil
}

// RestoreSnapshot replaces the cluster's state with the snapshot file read
// from r. force allows a file saved from another cluster.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader, force bool) (*SnapshotRestoreResponse, error) {
	return call[*SnapshotRestoreResponse](ctx, c, http.MethodPost, "/snapshot/restore", forceQuery(force), asReader(r))
}

// InitFromSnapshot bootstraps a new cluster on the agent's node whose
// desired state is the snapshot file read from r.
func (c *Client) InitFromSnapshot(ctx context.Context, r io.Reader) (*InitFromSnapshotResponse, error) {
	return call[*InitFromSnapshotResponse](ctx, c, http.MethodPost, "/init/snapshot", nil, asReader(r))
}
