package api

import (
	"context"
	"net/http"
)

// Volumes lists the named volumes of the agent's node.
func (c *Client) Volumes(ctx context.Context) ([]Volume, error) {
	return call[[]Volume](ctx, c, http.MethodGet, "/volumes", nil, nil)
}

// Volume returns one volume of the agent's node.
func (c *Client) Volume(ctx context.Context, name string) (*Volume, error) {
	return call[*Volume](ctx, c, http.MethodGet, "/volumes/"+escape(name), nil, nil)
}

// CreateVolume creates a named volume on the agent's node; creating one
// that exists returns it.
func (c *Client) CreateVolume(ctx context.Context, name string) (*Volume, error) {
	return call[*Volume](ctx, c, http.MethodPost, "/volumes", nil, VolumeCreateRequest{Name: name})
}

// RemoveVolume deletes a volume and its data; it is refused (409) while a
// container of the node uses it.
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/volumes/"+escape(name), nil, nil, nil)
}
