package scheduler

// Why this file looks the way it does.
//
// Plan is the whole of Shoal's orchestration as one pure function:
// (nodes, services, tasks, now) → a plan of task creations, task updates,
// task deletions and service status changes. The leader reads a snapshot,
// calls Plan, writes the plan to Raft in batches and calls Plan again when the
// state changes or at Plan.NextWake. Nothing here reads a clock, draws a
// random number (IDs come from Config.NewID) or keeps state between calls, so
// every rule is a table test and a plan can be replayed.
//
// The plan must be idempotent: Plan on the state after applying a plan (and
// before any node reports) is empty. Every decision is therefore a function
// of what is stored (task states, desired states, timestamps), never of what
// the previous call did. Three stored facts carry the memory:
//   - a task whose container ended while its desired state is still running
//     has not been dealt with yet (restart pending, or the slot is done);
//   - an outdated task with desired state shutdown that is still running on
//     a live node is a stop-first update in flight;
//   - Service.UpdateStatus says whether an update is running, paused or done.
//
// Work is O(tasks + nodes + placements·log nodes): tasks are grouped once by
// service and slot, tasks are copied only when the plan changes them, and
// each service places its new tasks from a heap of candidate nodes.
//
// Creation is the one amplifier: a spec of a few bytes asks for any number
// of task records, each stored on every node. So a plan creates at most
// Config.MaxCreate tasks (slots beyond it are not even materialised) and
// sets Plan.More; the leader writes that plan and plans again. Whatever was
// committed — a huge replica count from an older log included — the work
// and memory of one plan stay O(stored tasks + MaxCreate), and the cluster
// converges in rounds with the leader free to heartbeat between them.

import (
	"crypto/rand"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/placement"
	"github.com/shoal-org/shoal/node/scheduler/sightings"
)

// DefaultKeepTerminal is how many terminal tasks the plan keeps per slot
// (per node for global services), like consensus/fsm's MaxTerminalTasks. It
// is raised to MaxAttempts+1 for services whose restart policy needs the
// history.
const DefaultKeepTerminal = 5

// DefaultMaxCreate is how many tasks one plan creates at most. About 5 MB of
// task records: a few Raft entries, written in well under a second.
const DefaultMaxCreate = 2500

// Config parameterises a Planner. Derive it from DefaultConfig.
type Config struct {
	// NewID returns a fresh unique task ID. Tests inject a counter so plans
	// are reproducible. It is called once per created task, in plan order.
	NewID func() string
	// KeepTerminal is how many terminal tasks are kept per slot; older ones
	// are listed in Plan.Delete.
	KeepTerminal int
	// Pipeline filters nodes for new tasks; DefaultPipeline if nil.
	Pipeline placement.Pipeline
	// MaxCreate bounds the tasks one plan creates; the rest wait for the
	// next plan (Plan.More). Services are served in ID order.
	MaxCreate int
}

// DefaultConfig returns random 25-character IDs (as Swarm's), the default
// history, the default pipeline and creation budget.
func DefaultConfig() Config {
	return Config{NewID: RandomID, KeepTerminal: DefaultKeepTerminal, Pipeline: placement.DefaultPipeline(),
		MaxCreate: DefaultMaxCreate}
}

// Validate reports a config Plan cannot run with.
func (c Config) Validate() error {
	if c.NewID == nil {
		return fmt.Errorf("scheduler config: NewID is nil")
	}
	if c.KeepTerminal < 1 {
		return fmt.Errorf("scheduler config: KeepTerminal %d < 1", c.KeepTerminal)
	}
	if c.MaxCreate < 1 {
		return fmt.Errorf("scheduler config: MaxCreate %d < 1", c.MaxCreate)
	}
	return nil
}

// RandomID returns 25 random lowercase base-36 characters from crypto/rand.
func RandomID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [25]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics on platform failure)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// State is the snapshot Plan reads. Plan never modifies it or keeps
// references into it after returning.
type State struct {
	Nodes    []api.Node
	Services []api.Service
	Tasks    []api.Task

	// Levels is the protocol level each node's agent advertises (gossip),
	// by node ID; a node missing here counts as the base level, so a task
	// whose spec uses a newer field is not placed on it
	// (placement.LevelFilter).
	Levels map[string]int

	// Networks are the cluster's networks; those with allocated node
	// shares (api.Network.ShareBits) limit which nodes may take their
	// tasks (placement.ShareFilter). Others do not matter to the plan.
	Networks []api.Network

	// Unfit is why each node that cannot persist its state says so
	// (gossip: node/diskhealth, "disk full: ..."), by node ID. Such a node
	// takes no new task (placement.ReadyFilter) and its tasks stuck
	// assigned are re-placed after UnfitAssignedGrace; its running tasks
	// stay.
	Unfit map[string]string
}

// Plan is what the leader writes to Raft, in this order: ServiceUpdates,
// Create, Update, Delete. Tasks in Create and Update are whole records to
// upsert; the FSM keeps observed state that moved further than the plan's
// (consensus keepObserved), so a plan computed before a status report cannot
// undo it.
type Plan struct {
	// Create holds new tasks: desired running, state assigned with a node,
	// or state new with a Message when no node fits.
	Create []api.Task
	// Update holds changed tasks: desired-state changes, placements of
	// pending tasks, orphan marking. Scale-down shutdowns come highest slot
	// first.
	Update []api.Task
	// Delete lists terminal tasks to remove (history trimming, deleted
	// services).
	Delete []string
	// ServiceUpdates are services whose UpdateStatus changed, or which roll
	// back (Spec = old PreviousSpec). Version is the version the plan read:
	// write each with that as the expected version, the FSM assigns the new
	// one.
	ServiceUpdates []api.Service
	// NextWake, when not zero, is when Plan must run again even if nothing
	// changes (restart delays, update monitor periods and delays).
	NextWake time.Time
	// More reports that the plan stopped at Config.MaxCreate: more tasks
	// are due. Write this plan, then plan again (yielding in between).
	More bool
}

// Empty reports whether the plan writes nothing (NextWake aside).
func (p Plan) Empty() bool {
	return len(p.Create) == 0 && len(p.Update) == 0 && len(p.Delete) == 0 && len(p.ServiceUpdates) == 0
}

// Upserts returns Create followed by Update: the tasks of one UpsertTasks
// command (split into batches by the caller as needed).
func (p Plan) Upserts() []api.Task {
	out := make([]api.Task, 0, len(p.Create)+len(p.Update))
	return append(append(out, p.Create...), p.Update...)
}

// Planner computes plans. It holds its config and one memory, its first
// sights of nodes down and of task events (node/scheduler/sightings, which
// says which waits count from them and why), and is safe for concurrent
// use. The leader makes one per term.
type Planner struct {
	cfg  Config
	seen sightings.Memory
}

// NewPlanner returns a planner. Zero fields of cfg take their defaults.
func NewPlanner(cfg Config) *Planner {
	d := DefaultConfig()
	if cfg.NewID == nil {
		cfg.NewID = d.NewID
	}
	if cfg.KeepTerminal < 1 {
		cfg.KeepTerminal = d.KeepTerminal
	}
	if cfg.Pipeline == nil {
		cfg.Pipeline = d.Pipeline
	}
	if cfg.MaxCreate < 1 {
		cfg.MaxCreate = d.MaxCreate
	}
	return &Planner{cfg: cfg}
}

// Plan computes what must change for the tasks to match the services on the
// nodes of st at time now. It is pure but for the planner's first sights
// (Planner.seen): same inputs (and ID sequence) on the same
// planner, same plan. st is only read.
func (p *Planner) Plan(st State, now time.Time) Plan {
	r := newRun(p.cfg, st, now)
	r.seen = p.seen.Saw(st.Nodes, st.Services, st.Tasks, now)
	r.reconcileAll(st)
	r.placeAll()
	r.rebalanceAll()
	return r.result()
}

// taskRef is one task in the working set of a Plan call. It points at the
// caller's task until the plan changes it, then at a private copy.
type taskRef struct {
	t       *api.Task
	owned   bool // t is our copy
	created bool // the plan creates this task
	touched bool // already listed in run.touched
	deleted bool
	node    *placement.NodeInfo // t.NodeID resolved; nil if none or unknown
	// away: the task's node is down but within the service's disconnect
	// grace period; the task is kept as it is (keepAway).
	away bool
}

// run is the state of one Plan call.
type run struct {
	cfg      Config
	now      time.Time
	nodes    map[string]*placement.NodeInfo
	nodeList []*placement.NodeInfo // sorted by ID
	refs     []taskRef
	bySvc    map[string][]*taskRef
	created  []*taskRef
	touched  []*taskRef
	deleted  []string
	svcOut   []api.Service
	wake     time.Time
	cons     map[string][]placement.Constraint
	places   []*waiting
	budget   int  // tasks this plan may still create
	more     bool // a task was not created for want of budget
	// rebalance are the services that may move tasks in this plan, in
	// service ID order; counted is set once node usage is counted.
	rebalance []*svcRun
	counted   bool
	// seen are the planner's first sights (Planner.seen).
	seen sightings.Sights
	// shares are the networks with allocated node shares, by name: the
	// plan's count of their free shares (placement.NetShares).
	shares map[string]*placement.NetShares
	// minLevel is the lowest protocol level the nodes advertise (a node
	// of unknown level counts as 0): what every leader the cluster may
	// elect knows of the planner's ways (jobs.GiveUpLevel).
	minLevel int
}

func newRun(cfg Config, st State, now time.Time) *run {
	r := &run{
		cfg:    cfg,
		now:    now,
		nodes:  make(map[string]*placement.NodeInfo, len(st.Nodes)),
		refs:   make([]taskRef, len(st.Tasks)),
		bySvc:  make(map[string][]*taskRef, len(st.Services)),
		cons:   map[string][]placement.Constraint{},
		budget: cfg.MaxCreate,
	}
	for i := range st.Networks {
		if ns := placement.NewNetShares(&st.Networks[i]); ns != nil {
			if r.shares == nil {
				r.shares = map[string]*placement.NetShares{}
			}
			r.shares[ns.Name] = ns
		}
	}
	r.nodeList = make([]*placement.NodeInfo, len(st.Nodes))
	infos := make([]placement.NodeInfo, len(st.Nodes))
	for i := range st.Nodes {
		infos[i].Node = st.Nodes[i]
		infos[i].Level = st.Levels[st.Nodes[i].ID]
		infos[i].Unfit = st.Unfit[st.Nodes[i].ID]
		r.nodes[st.Nodes[i].ID] = &infos[i]
		r.nodeList[i] = &infos[i]
	}
	if len(st.Nodes) > 0 {
		r.minLevel = st.Levels[st.Nodes[0].ID]
		for i := range st.Nodes {
			r.minLevel = min(r.minLevel, st.Levels[st.Nodes[i].ID])
		}
	}
	sort.Slice(r.nodeList, func(i, j int) bool { return r.nodeList[i].Node.ID < r.nodeList[j].Node.ID })
	for i, n := range r.nodeList {
		n.Index = i
	}
	// Group the tasks by service in two passes over one backing array (in
	// task order within a service): one allocation instead of a growing
	// slice per service. Tasks of a service usually come together, so the
	// last service looked up is remembered.
	ids := make([]string, 0, len(st.Services))
	index := make(map[string]int, len(st.Services))
	var counts []int
	lastID, last := "", -1
	group := func(id string) int {
		if last >= 0 && id == lastID {
			return last
		}
		k, ok := index[id]
		if !ok {
			k = len(counts)
			index[id] = k
			ids = append(ids, id)
			counts = append(counts, 0)
		}
		lastID, last = id, k
		return k
	}
	// One pass over the (large) task records; the second pass reads only
	// the group numbers it noted.
	gi := make([]int32, len(st.Tasks))
	for i := range st.Tasks {
		t := &st.Tasks[i]
		ref := &r.refs[i]
		ref.t = t
		if id := t.NodeID; id != "" {
			ref.node = r.nodes[id]
		}
		k := group(t.ServiceID)
		gi[i] = int32(k)
		counts[k]++
	}
	start := 0
	for k, c := range counts {
		counts[k] = start
		start += c
	}
	backing := make([]*taskRef, len(st.Tasks))
	for i, k := range gi {
		backing[counts[k]] = &r.refs[i]
		counts[k]++
	}
	start = 0
	for k, id := range ids {
		end := counts[k]
		// Full slice expression: a service's tasks never grow into the
		// next service's.
		r.bySvc[id] = backing[start:end:end]
		start = end
	}
	return r
}

// edit returns a task the plan may change and records that it changed.
func (r *run) edit(ref *taskRef) *api.Task {
	if !ref.owned {
		c := *ref.t
		ref.t = &c
		ref.owned = true
	}
	if !ref.created && !ref.touched {
		ref.touched = true
		r.touched = append(r.touched, ref)
	}
	return ref.t
}

// take spends one creation of the plan's budget; false (and Plan.More) when
// none is left.
func (r *run) take() bool {
	if r.budget <= 0 {
		r.more = true
		return false
	}
	r.budget--
	return true
}

// wakeAt asks for another Plan call at t (if t is in the future).
func (r *run) wakeAt(t time.Time) {
	if t.After(r.now) && (r.wake.IsZero() || t.Before(r.wake)) {
		r.wake = t
	}
}

// constraints parses a spec's constraints once per distinct list. Specs are
// validated before they are stored; an invalid list is ignored here.
func (r *run) constraints(exprs []string) []placement.Constraint {
	if len(exprs) == 0 {
		return nil
	}
	key := strings.Join(exprs, "\x00")
	cs, ok := r.cons[key]
	if !ok {
		cs, _ = placement.ParseConstraints(exprs)
		r.cons[key] = cs
	}
	return cs
}

func (r *run) reconcileAll(st State) {
	svcs := make([]*api.Service, len(st.Services))
	known := make(map[string]bool, len(st.Services))
	for i := range st.Services {
		svcs[i] = &st.Services[i]
		known[st.Services[i].ID] = true
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ID < svcs[j].ID })
	for _, svc := range svcs {
		newSvcRun(r, *svc, r.bySvc[svc.ID]).reconcile()
	}
	var gone []string
	for id := range r.bySvc {
		if !known[id] {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		r.reconcileDeleted(r.bySvc[id])
	}
}

// reconcileDeleted shuts down the tasks of a deleted service and deletes
// them once terminal (the FSM's DeleteService already set desired shutdown;
// doing it again is harmless).
func (r *run) reconcileDeleted(tasks []*taskRef) {
	sortTasks(tasks)
	for _, ref := range tasks {
		r.vacate(ref, nil)
		r.shutdown(ref, "service removed")
		if terminal(ref.t.State) {
			ref.deleted = true
			r.deleted = append(r.deleted, ref.t.ID)
		}
	}
}

// vacate handles a task whose node is gone, down, drained or no longer
// satisfies the task's constraints: it is marked orphaned (down or removed
// node) or gets desired state shutdown, and its slot then looks empty to the
// orchestrator, which replaces it. cs are the task's constraints (nil for
// deleted services).
func (r *run) vacate(ref *taskRef, cs []placement.Constraint) {
	t := ref.t
	if terminal(t.State) {
		return
	}
	if t.State == api.TaskNew {
		// Never handed to a node: nobody will report on it.
		if t.DesiredState != api.TaskRunning {
			r.shutdown(ref, "")
			return
		}
		if t.NodeID == "" {
			return
		}
		// A global task waiting for room on its node.
		n := ref.node
		if n == nil || n.Node.Status == api.NodeDown || n.Node.Availability == api.AvailabilityDrain {
			r.shutdown(ref, "node unavailable")
		}
		return
	}
	n := ref.node
	if n == nil || n.Node.Status == api.NodeDown {
		msg := "node down"
		if n == nil {
			msg = "node removed"
		}
		e := r.edit(ref)
		e.State = api.TaskOrphaned
		e.DesiredState = api.TaskShutdown
		e.Message = msg
		e.UpdatedAt = r.now
		return
	}
	if t.DesiredState != api.TaskRunning {
		return
	}
	if stuck, wake := StuckOnUnfit(t, n.Unfit, r.now); stuck {
		e := r.edit(ref)
		e.State = api.TaskRejected
		// Error, as a node's own rejection: `service ps` shows it.
		e.Error = "never started: node " + api.ShortID(n.Node.ID) + " cannot persist its state (" + n.Unfit + ")"
		e.Message = "rejected by the leader"
		e.UpdatedAt = r.now
		return
	} else if !wake.IsZero() {
		r.wakeAt(wake)
	}
	if n.Node.Availability == api.AvailabilityDrain {
		r.shutdown(ref, "node drained")
		return
	}
	if ok, c := placement.MatchAll(cs, n.Node); !ok {
		r.shutdown(ref, "node no longer satisfies constraint "+c.String())
	}
}

// UnfitAssignedGrace is how long a task may stay assigned to a node that
// says it cannot persist its state (placement.NodeInfo.Unfit: a full disk)
// before it is written off as rejected and its slot re-placed: such a node
// never sees the assignment (its raft appends fail), so the task stayed
// assigned for ever. The grace leaves a node whose disk just filled the
// time to start what it already had.
const UnfitAssignedGrace = 15 * time.Second

// StuckOnUnfit decides (pure) whether task t, desired running on a node
// that is unfit for the reason unfit ("" when fit), is stuck: assigned for
// UnfitAssignedGrace or longer (UpdatedAt is when it was assigned). When
// not yet, wake is when it would be (zero when it never will).
func StuckOnUnfit(t *api.Task, unfit string, now time.Time) (stuck bool, wake time.Time) {
	if unfit == "" || t.State != api.TaskAssigned || t.DesiredState != api.TaskRunning {
		return false, time.Time{}
	}
	at := t.UpdatedAt.Add(UnfitAssignedGrace)
	if now.Before(at) {
		return false, at
	}
	return true, time.Time{}
}

// shutdown sets a task's desired state to shutdown. A task no node ever got
// (state new) goes straight to state shutdown, since nobody will report it.
// UpdatedAt is left alone: it records the last observed-state change, which
// restart delays and update monitoring read.
func (r *run) shutdown(ref *taskRef, msg string) {
	t := ref.t
	unassigned := t.State == api.TaskNew
	if t.DesiredState == api.TaskShutdown && !unassigned {
		return
	}
	e := r.edit(ref)
	e.DesiredState = api.TaskShutdown
	if unassigned {
		e.State = api.TaskShutdown
		e.UpdatedAt = r.now
	}
	if msg != "" {
		e.Message = msg
	}
}

func (r *run) result() Plan {
	var p Plan
	if len(r.created) > 0 {
		p.Create = make([]api.Task, 0, len(r.created))
		for _, ref := range r.created {
			p.Create = append(p.Create, *ref.t)
		}
	}
	n := 0
	for _, ref := range r.touched {
		if !ref.deleted {
			n++
		}
	}
	if n > 0 {
		p.Update = make([]api.Task, 0, n)
	}
	for _, ref := range r.touched {
		if !ref.deleted {
			p.Update = append(p.Update, *ref.t)
		}
	}
	p.Delete = r.deleted
	p.ServiceUpdates = r.svcOut
	p.NextWake = r.wake
	p.More = r.more
	return p
}

// sortTasks orders tasks oldest first (CreatedAt, then ID).
func sortTasks(ts []*taskRef) {
	if len(ts) < 2 {
		return
	}
	slices.SortFunc(ts, func(a, b *taskRef) int {
		if olderTask(a.t, b.t) {
			return -1
		}
		if olderTask(b.t, a.t) {
			return 1
		}
		return 0
	})
}

func olderTask(a, b *api.Task) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// ---- placement ----

// waiting is the new or pending tasks of one service waiting for nodes.
type waiting struct {
	global bool
	req    placement.Request
	prefs  []placement.Preference
	tasks  []*taskRef    // to place, in slot order
	all    [2][]*taskRef // every task of the service (stored, created), for spreading
}

// placeAll counts what every node already runs, then places each service's
// waiting tasks, services in ID order.
func (r *run) placeAll() {
	if len(r.places) == 0 {
		return
	}
	r.countUsage()
	for _, pl := range r.places {
		if pl.global {
			r.placeGlobal(pl)
		} else {
			r.placeSpread(pl)
		}
	}
}

// countUsage counts, once per plan, the reservations and active tasks of
// every node.
func (r *run) countUsage() {
	if r.counted {
		return
	}
	r.counted = true
	count := func(ref *taskRef) {
		t, n := ref.t, ref.node
		if n == nil || t.State == api.TaskNew || terminal(t.State) {
			return
		}
		addRes(&n.Reserved, t.Spec.Resources.Reservations)
		if t.DesiredState == api.TaskRunning {
			n.Tasks++
		}
		// A task asked to stop holds its host ports until it has stopped.
		n.HoldPorts(placement.HostPortsOf(&t.Spec))
	}
	for i := range r.refs {
		if !r.refs[i].deleted {
			count(&r.refs[i])
		}
	}
	for _, ref := range r.created {
		count(ref)
	}
}

func addRes(dst *api.Resources, r api.Resources) {
	dst.NanoCPUs += r.NanoCPUs
	dst.MemoryBytes += r.MemoryBytes
	dst.Pids += r.Pids
}

func (r *run) assign(ref *taskRef, n *placement.NodeInfo) {
	e := r.edit(ref)
	e.NodeID = n.Node.ID
	ref.node = n
	e.State = api.TaskAssigned
	e.Message = ""
	e.UpdatedAt = r.now
	addRes(&n.Reserved, e.Spec.Resources.Reservations)
	n.Tasks++
	n.HoldPorts(placement.HostPortsOf(&e.Spec))
	r.takeShares(e.Spec, n.Node.ID)
}

// specShares returns the allocated-share networks spec joins (nil: none).
func (r *run) specShares(spec api.ServiceSpec) []*placement.NetShares {
	if len(r.shares) == 0 {
		return nil
	}
	var out []*placement.NetShares
	for _, name := range spec.Networks {
		if ns := r.shares[name]; ns != nil {
			out = append(out, ns)
		}
	}
	return out
}

// takeShares records that node id got a task of spec: the state machine
// gives it a share of each allocated-share network it holds none of, so
// the plan counts one fewer free.
func (r *run) takeShares(spec api.ServiceSpec, id string) {
	for _, ns := range r.specShares(spec) {
		ns.Take(id)
	}
}

func (r *run) unplaced(ref *taskRef, msg string) {
	if ref.t.Message != msg {
		r.edit(ref).Message = msg
	}
}

// placeGlobal places global tasks on the node they were made for, if the
// node still has room.
func (r *run) placeGlobal(pl *waiting) {
	for _, ref := range pl.tasks {
		n := ref.node
		if n == nil {
			continue
		}
		if ok, _ := r.cfg.Pipeline.Check(n, &pl.req); ok {
			r.assign(ref, n)
			continue
		}
		r.unplaced(ref, r.cfg.Pipeline.Explain([]*placement.NodeInfo{n}, &pl.req))
	}
}

// placeSpread places a replicated service's tasks, each on the best node of
// a placement.Spread; the chosen node's counts grow and it sinks. A node
// that runs out of room leaves for good (reservations only grow in a plan).
func (r *run) placeSpread(pl *waiting) {
	perNode := make([]int, len(r.nodeList))
	for _, refs := range pl.all {
		for _, ref := range refs {
			t := ref.t
			if ref.deleted || ref.node == nil || t.State == api.TaskNew || terminal(t.State) || t.DesiredState != api.TaskRunning {
				continue
			}
			perNode[ref.node.Index]++
		}
	}
	// Nodes at the limit join too (Spread leaves them out): their tasks
	// count in the groups of the preferences.
	sp := placement.NewSpread(len(r.nodeList), pl.prefs, pl.req.MaxPerNode)
	if len(pl.req.Shares) > 0 || len(pl.req.HostPorts) > 0 {
		// A node without a share leaves once the last free one is taken;
		// a node that took a task holding host-mode ports leaves at once.
		sp.Admit = func(n *placement.NodeInfo) bool {
			if ok, _ := (placement.HostPortFilter{}).Check(n, &pl.req); !ok {
				return false
			}
			ok, _ := placement.ShareFilter{}.Check(n, &pl.req)
			return ok
		}
	}
	failures := r.recentFailures(pl.all)
	for _, n := range r.nodeList {
		if ok, _ := r.cfg.Pipeline.Check(n, &pl.req); ok {
			sp.AddFaulty(n, perNode[n.Index], failures != nil && failures[n.Index] >= MaxNodeFailures)
		}
	}
	msg := ""
	for _, ref := range pl.tasks {
		if n := sp.Pick(pl.req.Reservations); n != nil {
			r.assign(ref, n)
			sp.Took()
			perNode[n.Index]++
			continue
		}
		if msg == "" {
			pl.req.PerNode = perNode
			msg = r.cfg.Pipeline.Explain(r.nodeList, &pl.req)
		}
		r.unplaced(ref, msg)
	}
}

// MaxNodeFailures and FailureWindow are swarmkit's failure avoidance: a node
// where MaxNodeFailures tasks of a service failed or were rejected within
// FailureWindow is tried last for that service's new tasks
// (placement.Spread.AddFaulty). Without it a node that cannot run the
// service (runc failing, a disk too full for the image) was given every
// replacement, since it ran the fewest of the service's tasks: the slot
// stayed down while the other nodes had room.
const (
	MaxNodeFailures = 5
	FailureWindow   = 5 * time.Minute
)

// recentFailures counts, per node index, the tasks of one service (all:
// its stored and created tasks) that failed or were rejected within
// FailureWindow of the plan's time (their UpdatedAt, the report of the
// end: a node clock off by minutes only moves which nodes are tried
// last). nil when there are none. Placement tries such nodes last;
// rebalancing moves nothing to them (svcRun.rebalance).
func (r *run) recentFailures(all [2][]*taskRef) []int {
	var counts []int
	for _, refs := range all {
		for _, ref := range refs {
			t := ref.t
			if ref.node == nil || (t.State != api.TaskFailed && t.State != api.TaskRejected) || r.now.Sub(t.UpdatedAt) > FailureWindow {
				continue
			}
			if counts == nil {
				counts = make([]int, len(r.nodeList))
			}
			counts[ref.node.Index]++
		}
	}
	return counts
}

// terminal is api.TaskTerminal without the map lookup (hot path).
func terminal(state string) bool {
	switch state {
	case api.TaskComplete, api.TaskFailed, api.TaskShutdown, api.TaskRejected, api.TaskOrphaned:
		return true
	}
	return false
}

// rank is api.TaskStateOrder without the map lookup.
func rank(state string) int {
	switch state {
	case api.TaskNew:
		return 0
	case api.TaskAssigned:
		return 1
	case api.TaskPreparing:
		return 2
	case api.TaskStarting:
		return 3
	case api.TaskRunning:
		return 4
	}
	if terminal(state) {
		return 5
	}
	return 0
}
