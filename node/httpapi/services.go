package httpapi

// Service routes: create, update, scale, rollback, remove, ps. The routes
// decode and check what a request alone can tell (a rename, a mode change,
// the expected version); the agent validates the spec against the cluster
// (node/services.go) and writes it.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/shoal-org/shoal/api"
)

// Services is what the service routes need of the agent.
type Services interface {
	Replica
	// Services lists the services of the replica for display, by name.
	Services() ([]api.Service, error)
	// Service resolves ref (ID, prefix or name) to the stored service:
	// NotFound or BadRequest when it names no single service.
	Service(ref string) (*api.Service, error)
	// DisplayService fills the flat fields `service ls` shows.
	DisplayService(s *api.Service) (api.Service, error)
	// CheckSpec fills a spec's defaults and validates it against the
	// cluster, as the service with ID self (none for a new one).
	CheckSpec(spec api.ServiceSpec, self string) (api.ServiceSpec, error)
	// CreateService checks and stores a new service and returns it for
	// display once this node's replica holds it.
	CreateService(ctx context.Context, spec api.ServiceSpec) (api.Service, error)
	// UpdateService stores a checked spec for cur (expect: the version the
	// client read, 0 for any) and returns the service for display.
	UpdateService(ctx context.Context, cur *api.Service, spec api.ServiceSpec, expect uint64) (api.Service, error)
	// ScaleService sets the replica count of the service ref names.
	ScaleService(ctx context.Context, ref string, replicas uint64) (api.Service, error)
	// RollbackService puts cur's previous spec back.
	RollbackService(ctx context.Context, cur *api.Service) (api.Service, error)
	// RemoveService removes the service with this ID.
	RemoveService(ctx context.Context, id string) error
	// Tasks lists the tasks f selects for display, like `docker service ps`.
	Tasks(f TaskFilter) ([]api.Task, error)
	// CheckWrites runs the writes of one deploy in order against a copy
	// of the replica, as their routes and the leader would, and returns
	// the first refusal; it writes nothing.
	CheckWrites(ctx context.Context, req api.DeployCheck) error
}

// TaskFilter selects tasks: of one service or one node (references as the
// user gave them), in one desired state; empty fields select all.
type TaskFilter struct {
	Service, Node, DesiredState string
}

// ServiceRoutes routes the service routes to c but for the logs (streamed
// by the agent).
func ServiceRoutes(rt *Router, c Services) {
	h := &serviceHandlers{c: c}
	rt.Handle("GET /v1/services", h.list)
	rt.Handle("POST /v1/services", h.create)
	rt.Handle("GET /v1/services/{id}", h.inspect)
	rt.Handle("POST /v1/services/check", h.check)
	rt.Handle("POST /v1/services/{id}/update", h.update)
	rt.Handle("POST /v1/services/{id}/scale", h.scale)
	rt.Handle("POST /v1/services/{id}/rollback", h.rollback)
	rt.Handle("DELETE /v1/services/{id}", h.remove)
	rt.Handle("GET /v1/services/{id}/tasks", h.serviceTasks)
	rt.Handle("GET /v1/tasks", h.tasks)
}

// ServiceScaleHandler is the scale route on its own, for the dashboard,
// which serves the CLI's handlers under its own guard.
func ServiceScaleHandler(c Services) HandlerFunc { return (&serviceHandlers{c: c}).scale }

type serviceHandlers struct{ c Services }

func (h *serviceHandlers) list(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	return h.c.Services()
}

// synced checks the cluster and syncs the replica: for routes that decide
// a write on what they read.
func (h *serviceHandlers) synced(r *http.Request) error {
	if err := h.c.InCluster(); err != nil {
		return err
	}
	return h.c.SyncReplica(r.Context())
}

// pathService resolves the {id} of a service route.
func (h *serviceHandlers) pathService(r *http.Request) (*api.Service, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	return h.c.Service(r.PathValue("id"))
}

func (h *serviceHandlers) inspect(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	s, err := h.pathService(r)
	if err != nil {
		return nil, err
	}
	return h.c.DisplayService(s)
}

func (h *serviceHandlers) create(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	var spec api.ServiceSpec
	if err := DecodeBody(r, &spec); err != nil {
		return nil, err
	}
	if err := h.c.SyncReplica(r.Context()); err != nil {
		return nil, err
	}
	return h.c.CreateService(r.Context(), spec)
}

func (h *serviceHandlers) update(w http.ResponseWriter, r *http.Request) (any, error) {
	var spec api.ServiceSpec
	if err := DecodeBody(r, &spec); err != nil {
		return nil, err
	}
	if err := h.synced(r); err != nil {
		return nil, err
	}
	cur, err := h.pathService(r)
	if err != nil {
		return nil, err
	}
	if spec, err = CheckUpdate(cur, spec); err != nil {
		return nil, err
	}
	spec, err = h.c.CheckSpec(spec, cur.ID)
	if err != nil {
		return nil, err
	}
	var expect uint64
	if v := r.URL.Query().Get("version"); v != "" {
		expect, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, BadRequest("invalid version %q", v)
		}
	}
	return h.c.UpdateService(r.Context(), cur, spec, expect)
}

// CheckUpdate is what an update request alone can tell against the
// service it updates: the name and mode, which never change, default to
// the service's.
func CheckUpdate(cur *api.Service, spec api.ServiceSpec) (api.ServiceSpec, error) {
	if spec.Name == "" {
		spec.Name = cur.Name
	}
	if spec.Name != cur.Name {
		return spec, BadRequest("a service cannot be renamed (%s → %s)", cur.Name, spec.Name)
	}
	if spec.Mode == "" {
		spec.Mode = cur.Spec.Mode
	}
	if spec.Mode != cur.Spec.Mode {
		return spec, BadRequest("the mode of a service cannot change (%s → %s)", cur.Spec.Mode, spec.Mode)
	}
	return spec, nil
}

// check is POST /v1/services/check: a deploy's writes dry-run, read-only
// but refused where a write would be (a worker's socket, no cluster).
func (h *serviceHandlers) check(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	var req api.DeployCheck
	if err := DecodeBodyMax(r, &req, MaxDeployCheckBytes); err != nil {
		return nil, err
	}
	if n := len(req.Networks) + len(req.Secrets) + len(req.Configs) + len(req.Remove) + len(req.Update) + len(req.Create); n > MaxDeployCheckWrites {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge,
			Msg: fmt.Sprintf("a deploy check takes at most %d writes, this one has %d", MaxDeployCheckWrites, n)}
	}
	// Each write alone must fit the body its route takes (a 400, not the
	// check's own 413, which the CLI answers by deploying unchecked).
	specs := append([]api.ServiceSpec(nil), req.Create...)
	for _, u := range req.Update {
		specs = append(specs, u.Spec)
	}
	for _, spec := range specs {
		if b, _ := json.Marshal(spec); len(b) > MaxBodyBytes {
			return nil, BadRequest("service %s: the spec is larger than the %d MiB a write takes", spec.Name, MaxBodyBytes>>20)
		}
	}
	if err := h.c.SyncReplica(r.Context()); err != nil {
		return nil, err
	}
	if err := h.c.CheckWrites(r.Context(), req); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (h *serviceHandlers) scale(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	var req api.ScaleRequest
	if err := DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if err := h.c.SyncReplica(r.Context()); err != nil {
		return nil, err
	}
	return h.c.ScaleService(r.Context(), r.PathValue("id"), req.Replicas)
}

func (h *serviceHandlers) rollback(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.synced(r); err != nil {
		return nil, err
	}
	cur, err := h.pathService(r)
	if err != nil {
		return nil, err
	}
	if api.IsJob(cur.Spec.Mode) {
		// As docker's: a job is run again by an update, never rolled
		// back (the planner drives no update of a job, so a rollback
		// status would never end).
		return nil, BadRequest("service %s is a %s: a job cannot be rolled back; update it to run it again", cur.Name, cur.Spec.Mode)
	}
	if cur.PreviousSpec == nil {
		return nil, BadRequest("service %s has no previous spec to roll back to", cur.Name)
	}
	return h.c.RollbackService(r.Context(), cur)
}

func (h *serviceHandlers) remove(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.synced(r); err != nil {
		return nil, err
	}
	cur, err := h.pathService(r)
	if err != nil {
		return nil, err
	}
	if err := h.c.RemoveService(r.Context(), cur.ID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (h *serviceHandlers) serviceTasks(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	s, err := h.pathService(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var without uint64
	if v := q.Get("without_spec_version"); v != "" {
		if without, err = strconv.ParseUint(v, 10, 64); err != nil || without == 0 {
			return nil, BadRequest("invalid without_spec_version %q: want a spec version (a positive integer)", v)
		}
	}
	tasks, err := h.c.Tasks(TaskFilter{Service: s.ID, DesiredState: q.Get("desired_state")})
	if err != nil || without == 0 {
		return tasks, err
	}
	out := make([]taskView, len(tasks))
	for i := range tasks {
		out[i].Task = tasks[i]
		if tasks[i].SpecVersion != without {
			out[i].Spec = &tasks[i].Spec
		}
	}
	return out, nil
}

// taskView is a task in a listing whose caller asked for the tasks of one
// spec version without their spec (?without_spec_version=N): it holds that
// spec already (a convergence wait polls the list many times a second, and
// the spec is half of each task's JSON). Spec shadows the task's own, and
// is left out when nil; api.Task itself is left as it is, since it is also
// what raft's log entries encode.
type taskView struct {
	api.Task
	Spec *api.ServiceSpec `json:"spec,omitempty"`
}

func (h *serviceHandlers) tasks(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := TaskFilter{DesiredState: q.Get("desired_state")}
	switch {
	case q.Get("service") != "":
		f.Service = q.Get("service")
	case q.Get("node") != "":
		f.Node = q.Get("node")
	}
	return h.c.Tasks(f)
}
