package client

import (
	"context"
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// Networks lists the networks (api.DefaultNetwork first).
func (c *Client) Networks(ctx context.Context) ([]api.Network, error) {
	return call[[]api.Network](ctx, c, http.MethodGet, "/networks", nil, nil)
}

// Network returns one network by name, ID or unique ID prefix.
func (c *Client) Network(ctx context.Context, ref string) (*api.Network, error) {
	return call[*api.Network](ctx, c, http.MethodGet, "/networks/"+escape(ref), nil, nil)
}

// CreateNetwork creates a network; an empty Subnet and a zero VNI are
// allocated by the cluster.
func (c *Client) CreateNetwork(ctx context.Context, n api.Network) (*api.Network, error) {
	return call[*api.Network](ctx, c, http.MethodPost, "/networks", nil, n)
}

// RemoveNetwork removes a network that no service uses.
func (c *Client) RemoveNetwork(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/networks/"+escape(ref), nil, nil, nil)
}
