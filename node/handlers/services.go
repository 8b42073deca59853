package node

// The agent's side of the service routes (node/httpapi services.go, through
// apiAgent) and the logs route. The API validates and fills defaults
// (node/scheduler), then proposes a command; the leader's scheduler turns
// the stored spec into tasks.
//
// Every write route validates the spec it would store exactly as create
// does (scale and rollback included), after syncReplica so that what it
// checks against (images, names, ports, versions) includes every write
// acknowledged before; the leader validates the spec again before it
// proposes it (checkServiceCommand), whichever node sent it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime/image"
)

// displayService fills the flat fields shown by `service ls`.
func displayService(cl *cluster, s *api.Service) api.Service {
	out := *s
	out.Mode = s.Spec.Mode
	out.Replicas = s.Spec.Replicas
	out.Image = s.Spec.Image
	out.Ports = s.Spec.Ports
	if out.Ports == nil {
		out.Ports = []api.PortConfig{}
	}
	running := 0
	desired := 0
	down := map[string]bool{}
	for _, n := range cl.store.Nodes() {
		if n.Status == api.NodeDown {
			down[n.ID] = true
		}
	}
	for _, t := range cl.store.TasksByService(s.ID) {
		if t.DesiredState == api.TaskRunning {
			desired++
			// A task kept for a node that is down (the disconnect grace)
			// is not known to run: its replacement is counted instead.
			if t.State == api.TaskRunning && !down[t.NodeID] {
				running++
			}
		}
	}
	out.Running = running
	out.Networks = api.SpecNetworks(s.Spec)
	if out.VIPs == nil { // stored before services had networks
		out.VIPs = map[string]string{}
		if s.VIP != "" {
			out.VIPs[api.DefaultNetwork] = s.VIP
		}
	}
	if s.Spec.Mode == api.ModeGlobal {
		out.Replicas = uint64(desired)
	}
	return out
}

// consistentCluster returns the cluster for a read route, after
// syncReplica when the request asks for ?consistent=1 (a client about to
// decide a write on what it reads, like `stack deploy`).
func (a *Agent) consistentCluster(r *http.Request) (*cluster, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if c := r.URL.Query().Get("consistent"); c == "1" || c == "true" {
		if err := a.syncReplica(r.Context(), cl); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

func (a *Agent) resolveService(cl *cluster, ref string) (*api.Service, error) {
	s, err := cl.store.ResolveService(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, httpapi.NotFound("no such service: %s", ref)
		}
		return nil, httpapi.BadRequest("service %s: %v", ref, err)
	}
	return s, nil
}

// checkSpec fills defaults and validates a spec against the cluster.
func (a *Agent) checkSpec(cl *cluster, spec api.ServiceSpec, selfID string) (api.ServiceSpec, error) {
	replicas := spec.Replicas
	spec = scheduler.Defaults(spec)
	if spec.Mode == api.ModeReplicated {
		spec.Replicas = replicas // Defaults cannot tell an explicit 0 from unset
	}
	if err := checkStoredSpec(cl, spec, selfID); err != nil {
		return spec, httpapi.BadRequest("%v", err)
	}
	// With registry credentials the nodes pull an image no node has yet
	// from its registry, as docker does.
	if !a.imageKnown(cl, spec.Image) && spec.RegistryAuth == nil {
		return spec, httpapi.BadRequest("image %s not found on any node: import, load or pull it first (`shoal image import|load|pull`)", spec.Image)
	}
	return spec, nil
}

// checkStoredSpec is what a spec must pass to be stored, on this node's API
// and again on the leader: ValidateSpec (its error names every bad field)
// and no published port of another service.
func checkStoredSpec(cl *cluster, spec api.ServiceSpec, selfID string) error {
	if err := scheduler.ValidateSpec(spec); err != nil {
		return err
	}
	if err := checkFileRefs(cl.store, spec); err != nil {
		return err
	}
	var others []api.Service
	for _, s := range cl.store.Services() {
		if s.ID != selfID {
			others = append(others, *s)
		}
	}
	return scheduler.CheckPortClash(spec, others)
}

// checkServiceCommand is the leader's re-validation of a service write
// before it proposes it, whatever node forwarded it: a node with a bug or an
// older version must not store a spec this version refuses. The refusal
// travels back to the forwarding node as a 400.
func checkServiceCommand(cl *cluster, cmd consensus.Command) error {
	var err error
	// Decoded commands are values; commands built here are pointers.
	switch c := cmd.(type) {
	case consensus.CreateService:
		err = checkStoredSpec(cl, c.Service.Spec, c.Service.ID)
	case *consensus.CreateService:
		err = checkStoredSpec(cl, c.Service.Spec, c.Service.ID)
	case consensus.UpdateService:
		err = checkStoredSpec(cl, c.Service.Spec, c.Service.ID)
	case *consensus.UpdateService:
		err = checkStoredSpec(cl, c.Service.Spec, c.Service.ID)
	case consensus.Batch:
		return checkServiceCommands(cl, c.Commands)
	case *consensus.Batch:
		return checkServiceCommands(cl, c.Commands)
	}
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	return nil
}

func checkServiceCommands(cl *cluster, cmds []consensus.Command) error {
	for _, c := range cmds {
		if err := checkServiceCommand(cl, c); err != nil {
			return err
		}
	}
	return nil
}

// imageKnown reports whether an image is held by this node or recorded in
// the cluster state.
func (a *Agent) imageKnown(cl *cluster, ref string) bool {
	if _, err := a.images.Get(ref); err == nil {
		return true
	}
	_, ok := findClusterImage(cl, ref)
	return ok
}

// findClusterImage finds an image record by tag (normalised as the image
// store does) or by ID prefix.
func findClusterImage(cl *cluster, ref string) (*api.Image, bool) {
	want, err := image.NormalizeTag(ref)
	if err != nil {
		want = ref // an ID or ID prefix
	}
	for _, img := range cl.store.Images() {
		for _, t := range img.Tags {
			if nt, err := image.NormalizeTag(t); err == nil && nt == want {
				return img, true
			}
		}
		id := strings.TrimPrefix(img.ID, "sha256:")
		r := strings.TrimPrefix(ref, "sha256:")
		if len(r) >= 6 && strings.HasPrefix(id, r) {
			return img, true
		}
	}
	return nil, false
}

// readBackService waits until this node's replica holds the service at a
// version newer than after, and returns it for display.
func (a *Agent) readBackService(ctx context.Context, cl *cluster, id string, after uint64) (api.Service, error) {
	a.waitLocal(ctx, cl, func() bool {
		s, err := cl.store.Service(id)
		return err == nil && s.Version > after
	})
	s, err := cl.store.Service(id)
	if err != nil {
		return api.Service{}, err
	}
	return displayService(cl, s), nil
}

// displayTasks fills node hostnames and sorts like `docker service ps`:
// by slot, newest first. A task still meant to run on a node that is down
// (kept for the disconnect grace, node/scheduler calm.go) shows as orphaned
// with desired state running: nobody knows whether it runs, and it is not
// counted as running; if the node returns in time it shows its real state
// again.
func displayTasks(cl *cluster, tasks []*api.Task, desired string) []api.Task {
	hosts := map[string]string{}
	down := map[string]bool{}
	for _, n := range cl.store.Nodes() {
		hosts[n.ID] = n.Hostname
		down[n.ID] = n.Status == api.NodeDown
	}
	out := make([]api.Task, 0, len(tasks))
	for _, t := range tasks {
		if desired != "" && t.DesiredState != desired {
			continue
		}
		tt := *t
		tt.Node = hosts[t.NodeID]
		if down[t.NodeID] && t.DesiredState == api.TaskRunning && !api.TaskTerminal(t.State) && t.State != api.TaskNew {
			tt.State = api.TaskOrphaned
			if tt.Message == "" || t.State == api.TaskRunning {
				tt.Message = "node down: kept for it during the disconnect grace period"
			}
		}
		out = append(out, tt)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		if out[i].Slot == 0 && out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out
}

// handleServiceLogs merges the logs of every task of a service, from every
// node that ran one, into one stream.
func (a *Agent) handleServiceLogs(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	s, err := a.resolveService(cl, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	opts, err := logOptions(r)
	if err != nil {
		return nil, err
	}
	nodes := map[string]*api.Node{}
	for _, n := range cl.store.Nodes() {
		nodes[n.ID] = n
	}
	ctx := r.Context()
	out := make(chan api.LogLine, 256)
	var wg sync.WaitGroup
	for _, t := range cl.store.TasksByService(s.ID) {
		n := nodes[t.NodeID]
		if n == nil || t.ContainerID == "" {
			continue
		}
		t := *t
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.taskLogs(ctx, cl, n, t, opts, out)
		}()
	}
	go func() { wg.Wait(); close(out) }()
	streamLogs(w, out, "", "")
	return httpapi.Streamed, nil
}

// taskLogs copies one task's log lines into out, locally or from its node.
func (a *Agent) taskLogs(ctx context.Context, cl *cluster, n *api.Node, t api.Task, opts runtimeLogOptions, out chan<- api.LogLine) {
	name := fmt.Sprintf("%s.%s", t.Name, shortID(t.ID))
	send := func(l api.LogLine) bool {
		l.Task = name
		l.Node = n.Hostname
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if n.ID == a.id.NodeID {
		ch, err := a.rt.Logs(ctx, t.ContainerID, opts)
		if err != nil {
			return
		}
		for l := range ch {
			if !send(l) {
				return
			}
		}
		return
	}
	_ = a.remoteLogs(ctx, cl, n, t.ContainerID, opts, send)
}

// specChanged reports whether an update changes more than the replica
// count, i.e. whether it starts a rolling update.
func specChanged(prev, next api.ServiceSpec) bool {
	prev.Replicas, next.Replicas = 0, 0
	a, _ := json.Marshal(prev)
	b, _ := json.Marshal(next)
	return string(a) != string(b)
}

func (x apiAgent) Services() ([]api.Service, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	svcs := cl.store.Services()
	out := make([]api.Service, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, displayService(cl, s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (x apiAgent) Service(ref string) (*api.Service, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return x.a.resolveService(cl, ref)
}

func (x apiAgent) DisplayService(s *api.Service) (api.Service, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return api.Service{}, err
	}
	return displayService(cl, s), nil
}

func (x apiAgent) CheckSpec(spec api.ServiceSpec, self string) (api.ServiceSpec, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return spec, err
	}
	return x.a.checkSpec(cl, spec, self)
}

func (x apiAgent) CreateService(ctx context.Context, spec api.ServiceSpec) (api.Service, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.Service{}, err
	}
	spec, err = a.checkSpec(cl, spec, "")
	if err != nil {
		return api.Service{}, err
	}
	if _, err := cl.store.ServiceByName(spec.Name); err == nil {
		return api.Service{}, httpapi.BadRequest("a service named %s already exists", spec.Name)
	}
	now := time.Now().UTC()
	svc := api.Service{ID: newID(), Name: spec.Name, Spec: spec, CreatedAt: now, UpdatedAt: now}
	if _, err := a.write(ctx, &consensus.CreateService{Service: svc}); err != nil {
		return api.Service{}, err
	}
	return a.readBackService(ctx, cl, svc.ID, 0)
}

func (x apiAgent) UpdateService(ctx context.Context, cur *api.Service, spec api.ServiceSpec, expect uint64) (api.Service, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.Service{}, err
	}
	next := *cur
	prev := cur.Spec
	next.PreviousSpec = &prev
	next.Spec = spec
	now := time.Now().UTC()
	next.UpdatedAt = now
	if specChanged(prev, spec) {
		// The planner marks the service updating once it sees outdated
		// tasks; a paused update is resumed by a new spec.
		next.UpdateStatus = nil
	}
	if _, err := a.write(ctx, &consensus.UpdateService{Service: next, ExpectVersion: expect}); err != nil {
		return api.Service{}, err
	}
	return a.readBackService(ctx, cl, cur.ID, cur.Version)
}

func (x apiAgent) ScaleService(ctx context.Context, ref string, replicas uint64) (api.Service, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.Service{}, err
	}
	for attempt := 0; ; attempt++ {
		cur, err := a.resolveService(cl, ref)
		if err != nil {
			return api.Service{}, err
		}
		if cur.Spec.Mode != api.ModeReplicated {
			return api.Service{}, httpapi.BadRequest("scale applies to replicated services only; %s is %s", cur.Name, cur.Spec.Mode)
		}
		next := *cur
		next.Spec.Replicas = replicas
		// The same checks as create (and the same message): a scale is
		// a spec change like any other. No image check: scaling down
		// must work when the image is gone.
		if err := scheduler.ValidateSpec(next.Spec); err != nil {
			return api.Service{}, httpapi.BadRequest("%v", err)
		}
		next.UpdatedAt = time.Now().UTC()
		_, err = a.write(ctx, &consensus.UpdateService{Service: next, ExpectVersion: cur.Version})
		if errors.Is(err, consensus.ErrVersionMismatch) && attempt < 5 {
			continue // a concurrent change (e.g. the updater): re-read and retry
		}
		if err != nil {
			return api.Service{}, err
		}
		return a.readBackService(ctx, cl, cur.ID, cur.Version)
	}
}

func (x apiAgent) RollbackService(ctx context.Context, cur *api.Service) (api.Service, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.Service{}, err
	}
	// The previous spec was valid when stored, but by an older version's
	// rules perhaps, and its ports may have been taken since.
	if err := checkStoredSpec(cl, *cur.PreviousSpec, cur.ID); err != nil {
		return api.Service{}, httpapi.BadRequest("cannot roll back %s to its previous spec: %v", cur.Name, err)
	}
	next := *cur
	failed := cur.Spec
	next.Spec = *cur.PreviousSpec
	next.PreviousSpec = &failed
	now := time.Now().UTC()
	next.UpdatedAt = now
	next.UpdateStatus = &api.UpdateStatus{State: api.UpdateRollbackStarted, StartedAt: now, Message: "manual rollback"}
	if _, err := a.write(ctx, &consensus.UpdateService{Service: next, ExpectVersion: cur.Version}); err != nil {
		return api.Service{}, err
	}
	return a.readBackService(ctx, cl, cur.ID, cur.Version)
}

func (x apiAgent) RemoveService(ctx context.Context, id string) error {
	_, err := x.a.write(ctx, &consensus.DeleteService{ID: id, Now: time.Now().UTC()})
	return err
}

func (x apiAgent) Tasks(f httpapi.TaskFilter) ([]api.Task, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	var tasks []*api.Task
	switch {
	case f.Service != "":
		s, err := a.resolveService(cl, f.Service)
		if err != nil {
			return nil, err
		}
		tasks = cl.store.TasksByService(s.ID)
	case f.Node != "":
		n, err := a.resolveNode(cl, f.Node)
		if err != nil {
			return nil, err
		}
		tasks = cl.store.TasksByNode(n.ID)
	default:
		tasks = cl.store.Tasks()
	}
	return displayTasks(cl, tasks, f.DesiredState), nil
}

// handleServiceScale is the scale route, for the dashboard.
func (a *Agent) handleServiceScale(w http.ResponseWriter, r *http.Request) (any, error) {
	return httpapi.ServiceScaleHandler(apiAgent{a})(w, r)
}
