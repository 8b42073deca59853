package httpapi

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

type fakeNetworks struct {
	syncs   int
	created []api.Network
	removed []string
	have    map[string]*api.Network
}

func (f *fakeNetworks) InCluster() error                      { return nil }
func (f *fakeNetworks) SyncReplica(ctx context.Context) error { f.syncs++; return nil }
func (f *fakeNetworks) Networks() ([]api.Network, error) {
	out := []api.Network{}
	for _, n := range f.have {
		out = append(out, *n)
	}
	return out, nil
}
func (f *fakeNetworks) Network(ref string) (*api.Network, error) {
	if n := f.have[ref]; n != nil {
		return n, nil
	}
	return nil, NotFound("no such network: %s", ref)
}
func (f *fakeNetworks) CreateNetwork(ctx context.Context, n api.Network) (*api.Network, error) {
	f.created = append(f.created, n)
	n.ID = "new"
	return &n, nil
}
func (f *fakeNetworks) RemoveNetwork(ctx context.Context, id string) error {
	f.removed = append(f.removed, id)
	return nil
}

func TestNetworkRoutes(t *testing.T) {
	for _, tt := range []struct {
		name, method, path, body string
		code, syncs              int
		created, removed         int
		bodyHas                  string
	}{
		{name: "create", method: "POST", path: "/v1/networks", body: `{"name":" front ","subnet":" 10.9.0.0/24 ","attachable":true}`, code: 200, syncs: 1, created: 1, bodyHas: `"name":"front"`},
		{name: "create, bad name", method: "POST", path: "/v1/networks", body: `{"name":"a.b"}`, code: 400, bodyHas: `network name \"a.b\"`},
		{name: "create, name taken", method: "POST", path: "/v1/networks", body: `{"name":"back"}`, code: 400, syncs: 1, bodyHas: "a network named back already exists"},
		{name: "create, name taken in another case", method: "POST", path: "/v1/networks", body: `{"name":"BACK"}`, code: 400, syncs: 1, bodyHas: "a network named back already exists"},
		{name: "create, default name", method: "POST", path: "/v1/networks", body: `{"name":"Default"}`, code: 400, syncs: 1, bodyHas: "already exists"},
		{name: "create, unknown field", method: "POST", path: "/v1/networks", body: `{"name":"x","y":1}`, code: 400, bodyHas: "malformed request body"},
		{name: "inspect", method: "GET", path: "/v1/networks/back?consistent=1", code: 200, syncs: 1, bodyHas: `"name":"back"`},
		{name: "inspect, none", method: "GET", path: "/v1/networks/zz", code: 404},
		{name: "remove", method: "DELETE", path: "/v1/networks/back", code: 200, syncs: 1, removed: 1},
		{name: "remove the default", method: "DELETE", path: "/v1/networks/" + api.DefaultNetwork, code: 400, syncs: 1, bodyHas: "the default network cannot be removed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeNetworks{have: map[string]*api.Network{
				"back":             {ID: "b1", Name: "back"},
				api.DefaultNetwork: {ID: "d1", Name: api.DefaultNetwork},
			}}
			rt := NewRouter(testErrors)
			NetworkRoutes(rt, f)
			rec := httptest.NewRecorder()
			rt.Mux().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.bodyHas) {
				t.Errorf("%d %s, want %d with %q", rec.Code, rec.Body.String(), tt.code, tt.bodyHas)
			}
			if f.syncs != tt.syncs || len(f.created) != tt.created || len(f.removed) != tt.removed {
				t.Errorf("syncs %d created %d removed %d, want %d %d %d", f.syncs, len(f.created), len(f.removed), tt.syncs, tt.created, tt.removed)
			}
			for _, n := range f.created {
				if n.Name != "front" {
					continue
				}
				if n.ID != "" || !n.CreatedAt.IsZero() || n.Subnet != "10.9.0.0/24" {
					t.Errorf("create passed %+v: ID and time are the agent's, fields trimmed", n)
				}
			}
		})
	}
}
