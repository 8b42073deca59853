package httpapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// fakeServices holds one service, web (replicated, version 7), and
// records what the routes asked of the agent.
type fakeServices struct{ fakeAgent }

func (f *fakeServices) Services() ([]api.Service, error) { f.rec("list"); return []api.Service{}, nil }
func (f *fakeServices) Service(ref string) (*api.Service, error) {
	if ref == "mig" { // a job with a previous spec
		prev := api.ServiceSpec{Name: "mig", Mode: api.ModeReplicatedJob, Image: "bb:1"}
		return &api.Service{ID: "s2", Name: "mig", Version: 9, Spec: api.ServiceSpec{Name: "mig", Mode: api.ModeReplicatedJob, Image: "bb:2"},
			PreviousSpec: &prev}, nil
	}
	if ref != "web" {
		return nil, NotFound("no such service: %s", ref)
	}
	return &api.Service{ID: "s1", Name: "web", Version: 7, Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated}}, nil
}
func (f *fakeServices) DisplayService(s *api.Service) (api.Service, error) {
	f.rec("display %s", s.ID)
	return *s, nil
}
func (f *fakeServices) CheckSpec(spec api.ServiceSpec, self string) (api.ServiceSpec, error) {
	f.rec("check %s as %s", spec.Name, self)
	if spec.Image == "" {
		return spec, BadRequest("image is required")
	}
	return spec, nil
}
func (f *fakeServices) CreateService(ctx context.Context, spec api.ServiceSpec) (api.Service, error) {
	f.rec("create %s", spec.Name)
	return api.Service{Name: spec.Name}, nil
}
func (f *fakeServices) UpdateService(ctx context.Context, cur *api.Service, spec api.ServiceSpec, expect uint64) (api.Service, error) {
	f.rec("update %s %s expect=%d", cur.ID, spec.Mode, expect)
	return *cur, nil
}
func (f *fakeServices) ScaleService(ctx context.Context, ref string, replicas uint64) (api.Service, error) {
	f.rec("scale %s %d", ref, replicas)
	return api.Service{}, nil
}
func (f *fakeServices) RollbackService(ctx context.Context, cur *api.Service) (api.Service, error) {
	f.rec("rollback %s", cur.ID)
	return *cur, nil
}
func (f *fakeServices) RemoveService(ctx context.Context, id string) error {
	f.rec("remove %s", id)
	return nil
}
func (f *fakeServices) Tasks(tf TaskFilter) ([]api.Task, error) {
	f.rec("tasks %+v", tf)
	return []api.Task{}, nil
}

func (f *fakeServices) CheckWrites(_ context.Context, req api.DeployCheck) error {
	f.rec("check %d creates", len(req.Create))
	return nil
}

func TestServiceRoutes(t *testing.T) {
	for _, tt := range []routeCase{
		{name: "list", method: "GET", path: "/v1/services", code: 200, calls: "list"},
		{name: "list, consistent", method: "GET", path: "/v1/services?consistent=1", code: 200, syncs: 1, calls: "list"},
		{name: "inspect", method: "GET", path: "/v1/services/web", code: 200, calls: "display s1"},
		{name: "inspect, none", method: "GET", path: "/v1/services/db", code: 404, bodyHas: "no such service: db"},
		{name: "create", method: "POST", path: "/v1/services", body: `{"name":"db","image":"bb:1"}`, code: 200, syncs: 1, calls: "create db"},
		{name: "create in no cluster, bad body", method: "POST", path: "/v1/services", body: `{`, noCluster: true, code: 412},
		{name: "create, bad body", method: "POST", path: "/v1/services", body: `{"nope":1}`, code: 400, bodyHas: "malformed request body"},
		{name: "update", method: "POST", path: "/v1/services/web/update?version=7", body: `{"image":"bb:2"}`, code: 200, syncs: 1,
			calls: "check web as s1; update s1 replicated expect=7"},
		// update decodes its body before anything else (FuzzServiceSpecBody
		// relies on it: 4xx whatever the body, in no cluster).
		{name: "update in no cluster, bad body", method: "POST", path: "/v1/services/web/update", body: `{`, noCluster: true, code: 400, bodyHas: "malformed request body"},
		{name: "update in no cluster", method: "POST", path: "/v1/services/web/update", body: `{}`, noCluster: true, code: 412},
		{name: "rename", method: "POST", path: "/v1/services/web/update", body: `{"name":"www","image":"bb:2"}`, code: 400, syncs: 1, bodyHas: "cannot be renamed (web → www)"},
		{name: "mode change", method: "POST", path: "/v1/services/web/update", body: `{"mode":"global","image":"bb:2"}`, code: 400, syncs: 1, bodyHas: "the mode of a service cannot change"},
		// The spec is checked before the version is read.
		{name: "bad spec and version", method: "POST", path: "/v1/services/web/update?version=x", body: `{}`, code: 400, syncs: 1, calls: "check web as s1", bodyHas: "image is required"},
		{name: "bad version", method: "POST", path: "/v1/services/web/update?version=x", body: `{"image":"bb:2"}`, code: 400, syncs: 1, calls: "check web as s1", bodyHas: `invalid version \"x\"`},
		{name: "scale", method: "POST", path: "/v1/services/web/scale", body: `{"replicas":3}`, code: 200, syncs: 1, calls: "scale web 3"},
		{name: "scale, negative", method: "POST", path: "/v1/services/web/scale", body: `{"replicas":-1}`, code: 400, bodyHas: "malformed request body"},
		{name: "rollback without a previous spec", method: "POST", path: "/v1/services/web/rollback", code: 400, syncs: 1, bodyHas: "no previous spec"},
		{name: "rollback of a job", method: "POST", path: "/v1/services/mig/rollback", code: 400, syncs: 1, bodyHas: "a job cannot be rolled back"},
		{name: "remove", method: "DELETE", path: "/v1/services/web", code: 200, syncs: 1, calls: "remove s1"},
		{name: "remove, none", method: "DELETE", path: "/v1/services/db", code: 404, syncs: 1},
		{name: "service tasks", method: "GET", path: "/v1/services/web/tasks?desired_state=running", code: 200,
			calls: "tasks {Service:s1 Node: DesiredState:running}"},
		{name: "service tasks without a version's specs", method: "GET", path: "/v1/services/web/tasks?without_spec_version=7", code: 200,
			calls: "tasks {Service:s1 Node: DesiredState:}"},
		{name: "service tasks, bad spec version", method: "GET", path: "/v1/services/web/tasks?without_spec_version=x", code: 400,
			bodyHas: `invalid without_spec_version \"x\"`},
		{name: "service tasks, spec version 0", method: "GET", path: "/v1/services/web/tasks?without_spec_version=0", code: 400,
			bodyHas: "a positive integer"},
		{name: "tasks of a node", method: "GET", path: "/v1/tasks?node=h2", code: 200, calls: "tasks {Service: Node:h2 DesiredState:}"},
		{name: "tasks, service wins", method: "GET", path: "/v1/tasks?node=h2&service=web", code: 200, calls: "tasks {Service:web Node: DesiredState:}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServices{}
			checkRoute(t, tt, &f.fakeAgent, func(rt *Router) { ServiceRoutes(rt, f) })
		})
	}
}

// specTasks is fakeServices whose service web has a task at version 6
// and one at version 7.
type specTasks struct{ fakeServices }

func (f *specTasks) Tasks(TaskFilter) ([]api.Task, error) {
	return []api.Task{
		{ID: "t1", SpecVersion: 6, Spec: api.ServiceSpec{Name: "web", Image: "bb:1"}},
		{ID: "t2", SpecVersion: 7, Spec: api.ServiceSpec{Name: "web", Image: "bb:2"}},
	}, nil
}

// TestServiceTasksWithoutSpecVersion: the tasks of the version asked for
// come without their spec (the field is absent from the JSON), the others
// with theirs; without the parameter every task has its spec.
func TestServiceTasksWithoutSpecVersion(t *testing.T) {
	for _, tt := range []struct {
		query string
		want  map[string]bool // task ID -> has a spec in the JSON
	}{
		{"", map[string]bool{"t1": true, "t2": true}},
		{"?without_spec_version=7", map[string]bool{"t1": true, "t2": false}},
		{"?without_spec_version=6", map[string]bool{"t1": false, "t2": true}},
		{"?without_spec_version=9", map[string]bool{"t1": true, "t2": true}},
	} {
		rt := NewRouter(testErrors)
		ServiceRoutes(rt, &specTasks{})
		rec := httptest.NewRecorder()
		rt.Mux().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/services/web/tasks"+tt.query, nil))
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", tt.query, rec.Code, rec.Body)
		}
		var got []map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		for _, task := range got {
			var id string
			_ = json.Unmarshal(task["id"], &id)
			if _, has := task["spec"]; has != tt.want[id] {
				t.Errorf("%s: task %s has a spec: %v, want %v", tt.query, id, has, tt.want[id])
			}
		}
	}
}
