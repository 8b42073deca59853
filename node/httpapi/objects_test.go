package httpapi

import (
	"context"
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
)

type fakeObjects struct{ fakeAgent }

func (f *fakeObjects) Secrets() ([]api.Secret, error) { f.rec("secrets"); return []api.Secret{}, nil }
func (f *fakeObjects) Secret(ref string) (api.Secret, error) {
	f.rec("secret %s", ref)
	return api.Secret{Name: ref}, nil
}
func (f *fakeObjects) Configs() ([]api.Config, error) { f.rec("configs"); return []api.Config{}, nil }
func (f *fakeObjects) Config(ref string) (api.Config, error) {
	f.rec("config %s", ref)
	return api.Config{Name: ref}, nil
}
func (f *fakeObjects) CheckObject(req api.SecretCreateRequest, secret bool) error {
	if req.Name == "bad" {
		return errors.New("invalid: name bad")
	}
	return nil
}
func (f *fakeObjects) CreateObject(ctx context.Context, req api.SecretCreateRequest, secret bool) (any, error) {
	f.rec("create %s secret=%v", req.Name, secret)
	return api.Secret{Name: req.Name}, nil
}
func (f *fakeObjects) RemoveObject(ctx context.Context, ref string, secret bool) error {
	f.rec("remove %s secret=%v", ref, secret)
	return nil
}

func TestObjectRoutes(t *testing.T) {
	for _, tt := range []routeCase{
		{name: "secrets", method: "GET", path: "/v1/secrets", code: 200, calls: "secrets"},
		{name: "configs, consistent", method: "GET", path: "/v1/configs?consistent=1", code: 200, syncs: 1, calls: "configs"},
		{name: "inspect config", method: "GET", path: "/v1/configs/c", code: 200, calls: "config c"},
		{name: "inspect secret in no cluster", method: "GET", path: "/v1/secrets/s", noCluster: true, code: 412},
		{name: "create secret", method: "POST", path: "/v1/secrets", body: `{"name":"s","data":"eA=="}`, code: 200, syncs: 1, calls: "create s secret=true"},
		{name: "create config", method: "POST", path: "/v1/configs", body: `{"name":"c","data":"eA=="}`, code: 200, syncs: 1, calls: "create c secret=false"},
		// A refused name is said before the replica is synced.
		{name: "create, bad name", method: "POST", path: "/v1/secrets", body: `{"name":"bad","data":"eA=="}`, code: 400, bodyHas: "invalid: name bad"},
		{name: "create, bad body", method: "POST", path: "/v1/secrets", body: `{"name":1}`, code: 400, bodyHas: "malformed request body"},
		{name: "create in no cluster", method: "POST", path: "/v1/configs", body: `{`, noCluster: true, code: 412},
		{name: "remove", method: "DELETE", path: "/v1/configs/c", code: 200, syncs: 1, calls: "remove c secret=false"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeObjects{}
			checkRoute(t, tt, &f.fakeAgent, func(rt *Router) { ObjectRoutes(rt, f) })
		})
	}
}
