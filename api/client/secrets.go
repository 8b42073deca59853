package client

import (
	"context"
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// Secrets lists the cluster's secrets (never their data).
func (c *Client) Secrets(ctx context.Context) ([]api.Secret, error) {
	return call[[]api.Secret](ctx, c, http.MethodGet, "/secrets", nil, nil)
}

// Secret returns one secret by ID, ID prefix or name (never its data).
func (c *Client) Secret(ctx context.Context, id string) (*api.Secret, error) {
	return call[*api.Secret](ctx, c, http.MethodGet, "/secrets/"+escape(id), nil, nil)
}

// CreateSecret stores a secret; the answer comes after the Raft commit.
func (c *Client) CreateSecret(ctx context.Context, req api.SecretCreateRequest) (*api.Secret, error) {
	return call[*api.Secret](ctx, c, http.MethodPost, "/secrets", nil, req)
}

// RemoveSecret deletes a secret that no service uses.
func (c *Client) RemoveSecret(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/secrets/"+escape(id), nil, nil, nil)
}

// Configs lists the cluster's configs (without their data).
func (c *Client) Configs(ctx context.Context) ([]api.Config, error) {
	return call[[]api.Config](ctx, c, http.MethodGet, "/configs", nil, nil)
}

// Config returns one config by ID, ID prefix or name, with its data.
func (c *Client) Config(ctx context.Context, id string) (*api.Config, error) {
	return call[*api.Config](ctx, c, http.MethodGet, "/configs/"+escape(id), nil, nil)
}

// CreateConfig stores a config; the answer comes after the Raft commit.
func (c *Client) CreateConfig(ctx context.Context, req api.SecretCreateRequest) (*api.Config, error) {
	return call[*api.Config](ctx, c, http.MethodPost, "/configs", nil, req)
}

// RemoveConfig deletes a config that no service uses.
func (c *Client) RemoveConfig(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/configs/"+escape(id), nil, nil, nil)
}
