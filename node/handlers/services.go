package handlers

// The service and task routes' side of the replica (node/httpapi
// services.go routes them here). The API validates and fills defaults
// (node/scheduler), then proposes a command; the leader's scheduler turns
// the stored spec into tasks.
//
// Every write route validates the spec it would store exactly as create
// does (scale and rollback included), after a replica sync so that what it
// checks against (images, names, ports, versions) includes every write
// acknowledged before; the leader validates the spec again before it
// proposes it (CheckStoredSpec, from node's checkServiceCommand), whichever
// node sent it.

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/runtime/image"
)

// DisplayService fills the flat fields shown by `service ls` from the
// replica store (or one snapshot of it).
func DisplayService(store *consensus.Store, s *api.Service) api.Service {
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
	for _, n := range store.Nodes() {
		if n.Status == api.NodeDown {
			down[n.ID] = true
		}
	}
	job := api.IsJob(s.Spec.Mode)
	run := api.NewJobRunNodes(s.Version)
	for _, t := range store.TasksByService(s.ID) {
		if job {
			// A job counts its current run only (the service's version,
			// node/scheduler/jobs): running, done, and every task of
			// the run still meant to run or done (a global job's total).
			if t.SpecVersion != s.Version {
				continue
			}
			if t.State == api.TaskComplete && t.ExitCode == 0 {
				out.Completed++
			}
			if t.State == api.TaskRunning && !down[t.NodeID] && t.DesiredState == api.TaskRunning {
				running++
			}
			// A finished task is desired complete (the planner), and
			// a failed one not retried desired shutdown: both still
			// count in a global job's total (its nodes).
			run.Add(t)
			continue
		}
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
	if job {
		desired = run.Count()
	}
	if api.GlobalMode(s.Spec.Mode) {
		out.Replicas = uint64(desired)
	}
	return out
}

// ResolveService resolves ref (ID, prefix or name): NotFound or BadRequest
// when it names no single service.
func ResolveService(store *consensus.Store, ref string) (*api.Service, error) {
	s, err := store.ResolveService(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, httpapi.NotFound("no such service: %s", ref)
		}
		return nil, httpapi.BadRequest("service %s: %v", ref, err)
	}
	return s, nil
}

// checkSpec fills defaults and validates a spec against the cluster.
func (x *API) checkSpec(store *consensus.Store, spec api.ServiceSpec, selfID string) (api.ServiceSpec, error) {
	replicas := spec.Replicas
	spec = servicespec.Defaults(SpecNetworkNames(store, spec))
	if spec.Mode == api.ModeReplicated || spec.Mode == api.ModeReplicatedJob {
		// Defaults cannot tell an explicit 0 from unset; every client
		// sends its default (the CLI and compose 1), so 0 is meant. A
		// replicated job of 0 completions runs nothing, as docker's.
		spec.Replicas = replicas
	}
	if err := CheckStoredSpec(store, spec, selfID); err != nil {
		return spec, httpapi.BadRequest("%v", err)
	}
	// With registry credentials the nodes pull an image no node has yet
	// from its registry, as docker does.
	if !x.imageKnown(store, spec.Image) && spec.RegistryAuth == nil {
		return spec, httpapi.BadRequest("image %s not found on any node: import, load or pull it first (`shoal image import|load|pull`)", spec.Image)
	}
	return spec, nil
}

// CheckStoredSpec is what a spec must pass to be stored, on this node's API
// and again on the leader: servicespec.Validate (its error names every bad field),
// its secret and config references, and no published port of another
// service.
func CheckStoredSpec(store *consensus.Store, spec api.ServiceSpec, selfID string) error {
	if err := servicespec.Validate(spec); err != nil {
		return err
	}
	if err := CheckFileRefs(store, spec); err != nil {
		return err
	}
	var others []api.Service
	for _, s := range store.Services() {
		if s.ID != selfID {
			others = append(others, *s)
		}
	}
	return servicespec.CheckPortClash(spec, others)
}

// imageKnown reports whether an image is held by this node or recorded in
// the cluster state.
func (x *API) imageKnown(store *consensus.Store, ref string) bool {
	if x.agent.HasImage(ref) {
		return true
	}
	_, ok := FindClusterImage(store, ref)
	return ok
}

// FindClusterImage finds an image record of the replica by tag
// (normalised as the image store does), else by full ID, else by an ID
// prefix of at least 6 hex digits that names one record only. A tag wins
// over an ID prefix whatever order the records come in, and an ambiguous
// prefix finds nothing (as docker refuses it): records come in ID order,
// so taking the first match let an image whose ID sorts first answer for
// a prefix, or a tag, that meant another.
func FindClusterImage(store *consensus.Store, ref string) (*api.Image, bool) {
	return findImage(store.Images(), ref)
}

func findImage(images []*api.Image, ref string) (*api.Image, bool) {
	want, err := image.NormalizeTag(ref)
	if err != nil {
		want = ref // an ID or ID prefix
	}
	for _, img := range images {
		for _, t := range img.Tags {
			if nt, err := image.NormalizeTag(t); err == nil && nt == want {
				return img, true
			}
		}
	}
	r := strings.TrimPrefix(ref, "sha256:")
	if len(r) < 6 {
		return nil, false
	}
	var found *api.Image
	for _, img := range images {
		id := strings.TrimPrefix(img.ID, "sha256:")
		if id == r {
			return img, true
		}
		if strings.HasPrefix(id, r) {
			if found != nil {
				return nil, false // ambiguous
			}
			found = img
		}
	}
	return found, found != nil
}

// readBackService waits until this node's replica holds the service at a
// version newer than after, and returns it for display.
//
// written is what the write stored. When the replica no longer holds the
// service, a later write (another client's rm) removed it after this one
// took effect: the answer is what was written. It was the replica's
// ErrNotFound, a 404 for a write that had been applied, which the
// linearizability test caught (a scale answered "not found" while the
// service existed at the scale and was removed before the read-back).
func readBackService(ctx context.Context, store *consensus.Store, id string, after uint64, written *api.Service) (api.Service, error) {
	WaitLocal(ctx, store, func() bool {
		s, err := store.Service(id)
		return err == nil && s.Version > after
	})
	s, err := store.Service(id)
	if errors.Is(err, consensus.ErrNotFound) && written != nil {
		return DisplayService(store, written), nil
	}
	if err != nil {
		return api.Service{}, err
	}
	return DisplayService(store, s), nil
}

// DisplayTasks fills node hostnames and sorts like `docker service ps`:
// by slot, newest first. A task still meant to run on a node that is down
// (kept for the disconnect grace, node/scheduler calm.go) shows as orphaned
// with desired state running: nobody knows whether it runs, and it is not
// counted as running; if the node returns in time it shows its real state
// again. Its updated_at is then when the node went down (its
// StatusChangedAt), when that is later: the age `service ps` shows is that
// of the state shown, and the task's last report may be long before the
// node was lost ("orphaned 9 minutes ago" for a node lost a second ago).
func DisplayTasks(store *consensus.Store, tasks []*api.Task, desired string) []api.Task {
	hosts := map[string]string{}
	downSince := map[string]time.Time{} // down nodes: since when (maybe zero)
	for _, n := range store.Nodes() {
		hosts[n.ID] = n.Hostname
		if n.Status == api.NodeDown {
			downSince[n.ID] = n.StatusChangedAt
		}
	}
	out := make([]api.Task, 0, len(tasks))
	for _, t := range tasks {
		if desired != "" && t.DesiredState != desired {
			continue
		}
		tt := *t
		tt.Node = hosts[t.NodeID]
		if since, down := downSince[t.NodeID]; down && t.DesiredState == api.TaskRunning && !api.TaskTerminal(t.State) && t.State != api.TaskNew {
			tt.State = api.TaskOrphaned
			if since.After(tt.UpdatedAt) {
				tt.UpdatedAt = since
			}
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

// specChanged reports whether an update changes more than the replica
// count, i.e. whether it starts a rolling update.
func specChanged(prev, next api.ServiceSpec) bool {
	prev.Replicas, next.Replicas = 0, 0
	a, _ := json.Marshal(prev)
	b, _ := json.Marshal(next)
	return string(a) != string(b)
}

func (x *API) Services() ([]api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	svcs := store.Services()
	out := make([]api.Service, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, DisplayService(store, s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (x *API) Service(ref string) (*api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	return ResolveService(store, ref)
}

func (x *API) DisplayService(s *api.Service) (api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Service{}, err
	}
	return DisplayService(store, s), nil
}

func (x *API) CheckSpec(spec api.ServiceSpec, self string) (api.ServiceSpec, error) {
	store, err := x.agent.Store()
	if err != nil {
		return spec, err
	}
	return x.checkSpec(store, spec, self)
}

func (x *API) CreateService(ctx context.Context, spec api.ServiceSpec) (api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Service{}, err
	}
	cmd, err := x.createCommand(store, spec)
	if err != nil {
		return api.Service{}, err
	}
	if err := x.agent.Write(ctx, cmd); err != nil {
		return api.Service{}, err
	}
	return readBackService(ctx, store, cmd.Service.ID, 0, &cmd.Service)
}

// createCommand checks spec for a new service against store and builds
// the command that creates it: the create route's, and a deploy's dry run
// (check.go).
func (x *API) createCommand(store *consensus.Store, spec api.ServiceSpec) (*command.CreateService, error) {
	spec, err := x.checkSpec(store, spec, "")
	if err != nil {
		return nil, err
	}
	if _, err := store.ServiceByName(spec.Name); err == nil {
		return nil, httpapi.BadRequest("a service named %s already exists", spec.Name)
	}
	now := time.Now().UTC()
	return &command.CreateService{Service: api.Service{ID: x.agent.NewID(), Name: spec.Name, Spec: spec, CreatedAt: now, UpdatedAt: now}}, nil
}

func (x *API) UpdateService(ctx context.Context, cur *api.Service, spec api.ServiceSpec, expect uint64) (api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Service{}, err
	}
	cmd := updateCommand(cur, spec, expect)
	if err := x.agent.Write(ctx, cmd); err != nil {
		return api.Service{}, err
	}
	return readBackService(ctx, store, cur.ID, cur.Version, &cmd.Service)
}

// updateCommand builds the command that gives cur the checked spec
// (expect: the version the client read, 0 for any): the update route's,
// and a deploy's dry run (check.go).
func updateCommand(cur *api.Service, spec api.ServiceSpec, expect uint64) *command.UpdateService {
	// A port sent without its published port (`-p 80` as written, an API
	// client resending its spec) keeps the one the leader chose for it:
	// otherwise the spec would count as changed (a paused update resumed)
	// and the write would need every node to pick ports (the FSM keeps it
	// too, from the state it applies to).
	spec.Ports = api.KeepPublished(cur.Spec.Ports, spec.Ports)
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
	return &command.UpdateService{Service: next, ExpectVersion: expect}
}

func (x *API) ScaleService(ctx context.Context, ref string, replicas uint64) (api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Service{}, err
	}
	for attempt := 0; ; attempt++ {
		cur, err := ResolveService(store, ref)
		if err != nil {
			return api.Service{}, err
		}
		if cur.Spec.Mode != api.ModeReplicated && cur.Spec.Mode != api.ModeReplicatedJob {
			// docker's words; a replicated job's replicas are its
			// completions, and the write runs it again, as docker's.
			return api.Service{}, httpapi.BadRequest("%s: scale can only be used with replicated or replicated-job mode; it is %s", cur.Name, cur.Spec.Mode)
		}
		// The autoscaler sets a count outside its range back to the
		// nearest bound at once (node/autoscale): such a scale would start
		// or stop tasks for nothing and report a count that does not
		// last. The CLI checks a batch before it scales any; this is the
		// check for every other caller (the API, the dashboard).
		if as := cur.Spec.Autoscale; as != nil && (replicas < as.Min || replicas > as.Max) {
			return api.Service{}, httpapi.BadRequest("%s: %d is outside its autoscale range %d-%d, and the autoscaler would set it back; "+
				"change the range (`shoal service update --autoscale min=N,max=M,...`) or turn autoscaling off (`--autoscale off`)",
				cur.Name, replicas, as.Min, as.Max)
		}
		next := *cur
		next.Spec.Replicas = replicas
		// The same checks as create (and the same message): a scale is
		// a spec change like any other. No image check: scaling down
		// must work when the image is gone.
		if err := servicespec.Validate(next.Spec); err != nil {
			return api.Service{}, httpapi.BadRequest("%v", err)
		}
		next.UpdatedAt = time.Now().UTC()
		err = x.agent.Write(ctx, &command.UpdateService{Service: next, ExpectVersion: cur.Version})
		if errors.Is(err, consensus.ErrVersionMismatch) && attempt < 5 {
			continue // a concurrent change (e.g. the updater): re-read and retry
		}
		if err != nil {
			return api.Service{}, err
		}
		return readBackService(ctx, store, cur.ID, cur.Version, &next)
	}
}

func (x *API) RollbackService(ctx context.Context, cur *api.Service) (api.Service, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Service{}, err
	}
	// The previous spec was valid when stored, but by an older version's
	// rules perhaps, and its ports may have been taken since.
	if err := CheckStoredSpec(store, *cur.PreviousSpec, cur.ID); err != nil {
		return api.Service{}, httpapi.BadRequest("cannot roll back %s to its previous spec: %v", cur.Name, err)
	}
	next := *cur
	failed := cur.Spec
	next.Spec = *cur.PreviousSpec
	next.PreviousSpec = &failed
	now := time.Now().UTC()
	next.UpdatedAt = now
	next.UpdateStatus = &api.UpdateStatus{State: api.UpdateRollbackStarted, StartedAt: now, Message: "manual rollback"}
	if err := x.agent.Write(ctx, &command.UpdateService{Service: next, ExpectVersion: cur.Version}); err != nil {
		return api.Service{}, err
	}
	return readBackService(ctx, store, cur.ID, cur.Version, &next)
}

func (x *API) RemoveService(ctx context.Context, id string) error {
	return x.agent.Write(ctx, &command.DeleteService{ID: id, Now: time.Now().UTC()})
}

func (x *API) Tasks(f httpapi.TaskFilter) ([]api.Task, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	var tasks []*api.Task
	switch {
	case f.Service != "":
		s, err := ResolveService(store, f.Service)
		if err != nil {
			return nil, err
		}
		tasks = store.TasksByService(s.ID)
	case f.Node != "":
		n, err := ResolveNode(store, f.Node)
		if err != nil {
			return nil, err
		}
		tasks = store.TasksByNode(n.ID)
	default:
		tasks = store.Tasks()
	}
	return DisplayTasks(store, tasks, f.DesiredState), nil
}
