package client

import (
	"context"
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// Volumes lists the named volumes of the agent's node.
func (c *Client) Volumes(ctx context.Context) ([]api.Volume, error) {
	return call[[]api.Volume](ctx, c, http.MethodGet, "/volumes", nil, nil)
}

// Volume returns one volume of the agent's node.
func (c *Client) Volume(ctx context.Context, name string) (*api.Volume, error) {
	return call[*api.Volume](ctx, c, http.MethodGet, "/volumes/"+escape(name), nil, nil)
}

// CreateVolume creates a named volume on the agent's node; creating one
// that exists returns it.
func (c *Client) CreateVolume(ctx context.Context, name string) (*api.Volume, error) {
	return call[*api.Volume](ctx, c, http.MethodPost, "/volumes", nil, api.VolumeCreateRequest{Name: name})
}

// RemoveVolume deletes a volume and its data; it is refused (409) while a
// container of the node uses it.
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/volumes/"+escape(name), nil, nil, nil)
}
