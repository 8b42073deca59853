package simcluster

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler"
)

// ErrNotIdempotent is returned by Cluster.Step (with CheckIdempotent) and
// Converge when planning again right after applying a plan still changes
// something: a planner bug.
var ErrNotIdempotent = errors.New("plan not idempotent")

// Cluster is a side-effect-free harness for the planner (and for the
// leader's tests): an in-memory state that applies plans the way the FSM
// does (whole-task upserts that never move observed state backwards,
// versioned service updates) and simulates nodes reporting on their tasks.
// It is not safe for concurrent use. Fields may be read and changed freely
// between calls.
type Cluster struct {
	Planner  *scheduler.Planner
	Now      time.Time
	Nodes    map[string]*api.Node
	Services map[string]*api.Service
	Tasks    map[string]*api.Task
	// FailImages makes tasks of these images fail (exit code 1) instead of
	// reaching running when Report starts them.
	FailImages map[string]bool
	// SlowHealth makes tasks of these images start with health "starting"
	// and become healthy on the following Report, as tasks with a health
	// check do.
	SlowHealth map[string]bool
	// CheckIdempotent makes Step plan again after applying and fail when the
	// second plan is not empty.
	CheckIdempotent bool
	// Levels is the protocol level of each node's agent (State.Levels):
	// a node missing here is at the base level.
	Levels map[string]int
	// Networks are the networks with allocated node shares
	// (State.Networks), by name. Apply gives a node a share as the FSM
	// does when a task of one is assigned to it, and records in
	// ShareRefusals an assignment the FSM would refuse (no share free).
	Networks      map[string]*api.Network
	ShareRefusals []string
	// Unfit is State.Unfit: nodes that cannot persist their state (a full
	// disk), by ID. Report starts nothing on them (they never see an
	// assignment) but stops what they are told to.
	Unfit map[string]string

	index uint64 // raft-index stand-in for service versions
	ids   int
}

// New returns an empty cluster at time now whose planner draws
// IDs task-000001, task-000002…
func New(now time.Time) *Cluster {
	c := &Cluster{
		Now:             now,
		Nodes:           map[string]*api.Node{},
		Services:        map[string]*api.Service{},
		Tasks:           map[string]*api.Task{},
		FailImages:      map[string]bool{},
		SlowHealth:      map[string]bool{},
		CheckIdempotent: true,
		index:           100,
	}
	c.Planner = scheduler.NewPlanner(scheduler.Config{NewID: func() string {
		c.ids++
		return fmt.Sprintf("task-%06d", c.ids)
	}})
	return c
}

// AddNode adds a ready, active node whose hostname is its ID.
func (c *Cluster) AddNode(id string, labels map[string]string) *api.Node {
	n := &api.Node{ID: id, Hostname: id, Status: api.NodeReady, Availability: api.AvailabilityActive,
		Labels: labels, CreatedAt: c.Now, UpdatedAt: c.Now}
	c.Nodes[id] = n
	return n
}

// SetNodeStatus changes a node's status as the leader records gossip's
// verdict: StatusChangedAt becomes c.Now.
func (c *Cluster) SetNodeStatus(id, status string) {
	n := c.Nodes[id]
	n.Status = status
	n.StatusChangedAt = c.Now
	n.UpdatedAt = c.Now
}

// RemoveNode removes a node as the FSM applies `node rm`: the record goes,
// and its tasks are told to shut down, those not ended orphaned ("node
// removed"), dated c.Now.
func (c *Cluster) RemoveNode(id string) {
	delete(c.Nodes, id)
	for _, t := range c.Tasks {
		if t.NodeID != id {
			continue
		}
		t.DesiredState = api.TaskShutdown
		if !api.TaskTerminal(t.State) {
			t.State, t.Message = api.TaskOrphaned, "node removed"
		}
		t.UpdatedAt = c.Now
	}
}

// CreateService stores a service with spec exactly as given (call Defaults
// first for Docker's defaults) and returns it. The ID is "svc-" + name.
func (c *Cluster) CreateService(spec api.ServiceSpec) *api.Service {
	c.index++
	s := &api.Service{ID: "svc-" + spec.Name, Name: spec.Name, Spec: spec, Version: c.index,
		CreatedAt: c.Now, UpdatedAt: c.Now}
	c.Services[s.ID] = s
	return s
}

// UpdateService changes a service's spec as `service update` does: the old
// spec becomes PreviousSpec, the version moves on and the update status is
// cleared (Plan starts a new update if tasks are now outdated).
func (c *Cluster) UpdateService(id string, mutate func(*api.ServiceSpec)) *api.Service {
	s := c.Services[id]
	prev := s.Spec
	mutate(&s.Spec)
	s.PreviousSpec = &prev
	c.index++
	s.Version = c.index
	s.UpdateStatus = nil
	s.UpdatedAt = c.Now
	return s
}

// DeleteService removes a service and sets its tasks' desired state to
// shutdown, as the FSM does.
func (c *Cluster) DeleteService(id string) {
	delete(c.Services, id)
	for _, t := range c.Tasks {
		if t.ServiceID == id {
			t.DesiredState = api.TaskShutdown
			if t.NodeID == "" && !api.TaskTerminal(t.State) {
				t.State = api.TaskShutdown
			}
		}
	}
}

// State returns a snapshot, each table sorted by ID.
func (c *Cluster) State() scheduler.State {
	var st scheduler.State
	st.Levels = c.Levels
	st.Unfit = c.Unfit
	for _, n := range c.Nodes {
		st.Nodes = append(st.Nodes, *n)
	}
	for _, s := range c.Services {
		st.Services = append(st.Services, *s)
	}
	for _, n := range c.Networks {
		st.Networks = append(st.Networks, *n)
	}
	sort.Slice(st.Networks, func(i, j int) bool { return st.Networks[i].Name < st.Networks[j].Name })
	st.Tasks = make([]api.Task, 0, len(c.Tasks))
	for _, t := range c.Tasks {
		st.Tasks = append(st.Tasks, *t)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	sort.Slice(st.Services, func(i, j int) bool { return st.Services[i].ID < st.Services[j].ID })
	sort.Slice(st.Tasks, func(i, j int) bool { return st.Tasks[i].ID < st.Tasks[j].ID })
	return st
}

// Plan plans on the current state at c.Now.
func (c *Cluster) Plan() scheduler.Plan { return c.Planner.Plan(c.State(), c.Now) }

// Apply writes a plan as the FSM would: service updates only if the version
// still matches (then a new version), task upserts keeping observed state
// that is further along, deletions.
func (c *Cluster) Apply(p scheduler.Plan) {
	for _, s := range p.ServiceUpdates {
		old := c.Services[s.ID]
		if old == nil || old.Version != s.Version {
			continue
		}
		ns := s
		c.index++
		ns.Version = c.index
		c.Services[s.ID] = &ns
	}
	for _, t := range p.Create {
		nt := t
		c.Tasks[t.ID] = &nt
	}
	for _, t := range p.Update {
		nt := t
		if old := c.Tasks[t.ID]; old != nil && api.TaskStateOrder[nt.State] <= api.TaskStateOrder[old.State] {
			nt.State, nt.ExitCode, nt.StartedAt, nt.Error = old.State, old.ExitCode, old.StartedAt, old.Error
			if api.TaskStateOrder[old.State] >= api.TaskStateOrder[api.TaskPreparing] {
				nt.Message = old.Message
			}
		}
		c.Tasks[t.ID] = &nt
	}
	for _, id := range p.Delete {
		delete(c.Tasks, id)
	}
	for _, t := range p.Upserts() {
		c.assignShares(t)
	}
}

// assignShares gives t's node a share of each network of c.Networks that
// t joins, as consensus/fsm does for a task placed to run.
func (c *Cluster) assignShares(t api.Task) {
	if t.NodeID == "" || t.DesiredState != api.TaskRunning || t.State == api.TaskNew || api.TaskTerminal(t.State) {
		return
	}
	for _, name := range t.Spec.Networks {
		n := c.Networks[name]
		if n == nil || n.ShareBits == 0 {
			continue
		}
		if _, ok := n.Shares[t.NodeID]; ok {
			continue
		}
		share, ok := api.FreeShare(netip.MustParsePrefix(n.Subnet), n.ShareBits, n.Shares)
		if !ok {
			c.ShareRefusals = append(c.ShareRefusals, fmt.Sprintf("task %s on %s: no address space left on network %s", t.ID, t.NodeID, name))
			continue
		}
		if n.Shares == nil {
			n.Shares = map[string]string{}
		}
		n.Shares[t.NodeID] = share.String()
	}
}

// Step plans, applies and returns the plan. With CheckIdempotent it plans
// again and returns ErrNotIdempotent if that second plan writes anything
// (unless the first plan stopped at its creation budget: Plan.More).
func (c *Cluster) Step() (scheduler.Plan, error) {
	p := c.Plan()
	c.Apply(p)
	if c.CheckIdempotent && !p.More {
		ids := c.ids
		if again := c.Plan(); !again.Empty() {
			return p, fmt.Errorf("%w: second plan has %d creates, %d updates, %d deletes, %d service updates (first: %+v)",
				ErrNotIdempotent, len(again.Create), len(again.Update), len(again.Delete), len(again.ServiceUpdates), Summarize(again))
		}
		c.ids = ids
	}
	return p, nil
}

func Summarize(p scheduler.Plan) string {
	s := ""
	for _, t := range p.Create {
		s += fmt.Sprintf(" create %s slot=%d node=%s;", t.Name, t.Slot, t.NodeID)
	}
	for _, t := range p.Update {
		s += fmt.Sprintf(" update %s %s/%s node=%s msg=%q;", t.ID, t.State, t.DesiredState, t.NodeID, t.Message)
	}
	for _, id := range p.Delete {
		s += " delete " + id + ";"
	}
	for _, sv := range p.ServiceUpdates {
		if sv.UpdateStatus != nil {
			s += " service " + sv.ID + " " + sv.UpdateStatus.State + ";"
		}
	}
	return s
}

// Report simulates every ready node reporting once: tasks assigned to it
// with desired state running start (running, or failed for FailImages) and
// tasks with desired state shutdown stop. It returns how many tasks moved.
func (c *Cluster) Report() int {
	moved := 0
	for _, t := range c.Tasks {
		n := c.Nodes[t.NodeID]
		if n == nil || n.Status != api.NodeReady || t.State == api.TaskNew || api.TaskTerminal(t.State) {
			continue
		}
		if c.Unfit[n.ID] != "" && t.State == api.TaskAssigned {
			continue // its raft appends fail: it never saw the task
		}
		switch {
		case t.DesiredState != api.TaskRunning:
			t.State = api.TaskShutdown
		case t.State == api.TaskRunning && t.Health == api.HealthStarting:
			t.Health = api.HealthHealthy
		case t.State == api.TaskRunning:
			continue
		case c.FailImages[t.Image]:
			t.State, t.ExitCode = api.TaskFailed, 1
			t.StartedAt = c.Now
		default:
			t.State = api.TaskRunning
			t.StartedAt = c.Now
			if c.SlowHealth[t.Image] {
				t.Health = api.HealthStarting
			}
		}
		t.UpdatedAt = c.Now
		moved++
	}
	return moved
}

// Finish makes a running task end: complete with exit code 0, otherwise
// failed with the given code.
func (c *Cluster) Finish(taskID string, exitCode int) {
	t := c.Tasks[taskID]
	t.State, t.ExitCode, t.UpdatedAt = api.TaskComplete, exitCode, c.Now
	if exitCode != 0 {
		t.State = api.TaskFailed
	}
}

// Converge alternates Step and Report, jumping the clock to NextWake when
// nothing else happens, until a plan is empty with nothing to report and no
// wake-up, or maxSteps is reached. It returns the number of steps.
func (c *Cluster) Converge(maxSteps int) (int, error) {
	for i := 1; i <= maxSteps; i++ {
		p, err := c.Step()
		if err != nil {
			return i, err
		}
		moved := c.Report()
		if p.Empty() && moved == 0 {
			if p.NextWake.IsZero() {
				return i, nil
			}
			c.Now = p.NextWake
		}
	}
	return maxSteps, fmt.Errorf("no convergence after %d steps", maxSteps)
}

// Active returns the tasks of a service whose desired state is running,
// sorted by slot then node.
func (c *Cluster) Active(serviceID string) []api.Task {
	var out []api.Task
	for _, t := range c.Tasks {
		if t.ServiceID == serviceID && t.DesiredState == api.TaskRunning {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		return out[i].NodeID < out[j].NodeID
	})
	return out
}

// RunningPerNode counts a service's running tasks with desired state
// running, by node.
func (c *Cluster) RunningPerNode(serviceID string) map[string]int {
	out := map[string]int{}
	for _, t := range c.Tasks {
		if t.ServiceID == serviceID && t.DesiredState == api.TaskRunning && t.State == api.TaskRunning {
			out[t.NodeID]++
		}
	}
	return out
}

// CheckSlots verifies a replicated service's invariant: each slot
// 1..replicas has exactly one running task with desired state running, and
// no other slot has one.
func (c *Cluster) CheckSlots(serviceID string) error {
	s := c.Services[serviceID]
	per := map[int]int{}
	for _, t := range c.Tasks {
		if t.ServiceID == serviceID && t.DesiredState == api.TaskRunning && t.State == api.TaskRunning {
			per[t.Slot]++
		}
	}
	var errs []error
	for k := 1; k <= int(s.Spec.Replicas); k++ {
		if per[k] != 1 {
			errs = append(errs, fmt.Errorf("slot %d has %d running tasks", k, per[k]))
		}
		delete(per, k)
	}
	for k, n := range per {
		errs = append(errs, fmt.Errorf("slot %d beyond replicas has %d running tasks", k, n))
	}
	return errors.Join(errs...)
}
