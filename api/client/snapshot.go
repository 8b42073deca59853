package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// SaveSnapshot streams a snapshot file of the cluster into w. The caller
// must discard what it wrote when an error comes back.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) (*api.SnapshotInfo, error) {
	resp, err := c.send(ctx, http.MethodGet, "/snapshot", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info api.SnapshotInfo
	if err := json.Unmarshal([]byte(resp.Header.Get(api.SnapshotInfoHeader)), &info); err != nil {
		return nil, fmt.Errorf("snapshot: malformed %s header: %w", api.SnapshotInfoHeader, err)
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
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader, force bool) (*api.SnapshotRestoreResponse, error) {
	return call[*api.SnapshotRestoreResponse](ctx, c, http.MethodPost, "/snapshot/restore", forceQuery(force), asReader(r))
}

// InitFromSnapshot bootstraps a new cluster on the agent's node whose
// desired state is the snapshot file read from r.
func (c *Client) InitFromSnapshot(ctx context.Context, r io.Reader) (*api.InitFromSnapshotResponse, error) {
	return call[*api.InitFromSnapshotResponse](ctx, c, http.MethodPost, "/init/snapshot", nil, asReader(r))
}
