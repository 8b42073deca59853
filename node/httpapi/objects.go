package httpapi

// Secret and config routes (issue 8): create, list, inspect, remove. The
// plaintext of a secret goes to the leader inside the admin write and is
// sealed there (node/secrets.go); nothing here keeps it.

import (
	"context"
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// Objects is what the secret and config routes need of the agent. secret
// picks secrets (true) or configs (false), which share their routes' shape.
type Objects interface {
	Replica
	Secrets() ([]api.Secret, error)
	Secret(ref string) (api.Secret, error)
	// Configs lists configs without their data; Config has it.
	Configs() ([]api.Config, error)
	Config(ref string) (api.Config, error)
	// CheckObject refuses a bad name or size (the leader checks again).
	CheckObject(req api.SecretCreateRequest, secret bool) error
	// CreateObject stores a checked secret or config and returns what
	// `inspect` shows of it.
	CreateObject(ctx context.Context, req api.SecretCreateRequest, secret bool) (any, error)
	// RemoveObject removes the secret or config ref names.
	RemoveObject(ctx context.Context, ref string, secret bool) error
}

// ObjectRoutes routes the secret and config routes to c.
func ObjectRoutes(rt *Router, c Objects) {
	read := func(f func(r *http.Request) (any, error)) HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) (any, error) {
			if err := ConsistentRead(r, c); err != nil {
				return nil, err
			}
			return f(r)
		}
	}
	rt.Handle("GET /v1/secrets", read(func(r *http.Request) (any, error) { return c.Secrets() }))
	rt.Handle("GET /v1/secrets/{id}", read(func(r *http.Request) (any, error) { return c.Secret(r.PathValue("id")) }))
	rt.Handle("POST /v1/secrets", func(w http.ResponseWriter, r *http.Request) (any, error) { return createObject(c, r, true) })
	rt.Handle("DELETE /v1/secrets/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) { return removeObject(c, r, true) })
	rt.Handle("GET /v1/configs", read(func(r *http.Request) (any, error) { return c.Configs() }))
	rt.Handle("GET /v1/configs/{id}", read(func(r *http.Request) (any, error) { return c.Config(r.PathValue("id")) }))
	rt.Handle("POST /v1/configs", func(w http.ResponseWriter, r *http.Request) (any, error) { return createObject(c, r, false) })
	rt.Handle("DELETE /v1/configs/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) { return removeObject(c, r, false) })
}

func createObject(c Objects, r *http.Request, secret bool) (any, error) {
	if err := c.InCluster(); err != nil {
		return nil, err
	}
	var req api.SecretCreateRequest
	if err := DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if err := c.CheckObject(req, secret); err != nil {
		return nil, BadRequest("%v", err)
	}
	if err := c.SyncReplica(r.Context()); err != nil {
		return nil, err
	}
	return c.CreateObject(r.Context(), req, secret)
}

func removeObject(c Objects, r *http.Request, secret bool) (any, error) {
	if err := c.InCluster(); err != nil {
		return nil, err
	}
	if err := c.SyncReplica(r.Context()); err != nil {
		return nil, err
	}
	if err := c.RemoveObject(r.Context(), r.PathValue("id"), secret); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
