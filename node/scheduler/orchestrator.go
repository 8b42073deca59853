package scheduler

import (
	"fmt"
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/jobs"
	"github.com/shoal-org/shoal/node/scheduler/placement"
	"github.com/shoal-org/shoal/node/scheduler/restartpolicy"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
)

// The orchestrator half of Plan (swarmkit's replicated and global
// orchestrators plus its restart supervisor): for one service it makes every
// slot hold exactly one task with desired state running, replaces tasks that
// ended according to the restart policy, and shuts down what is in excess.
// It only decides that a task must exist; placement.go picks its node.

// slot is the succession of tasks for one replica (Slot N) or, for a global
// service, for one node.
type slot struct {
	num   int
	node  string
	tasks []*taskRef // oldest first
	// old is the outdated active task when the slot is an update candidate.
	old *taskRef
}

// svcRun reconciles one service.
type svcRun struct {
	r      *run
	orig   api.Service
	svc    api.Service // working copy: UpdateStatus or, on rollback, Spec change
	spec   api.ServiceSpec
	global bool
	tasks  []*taskRef
	cur    map[uint64]bool // SpecVersion → materially current
	// outdated is hasOutdated's answer for a replicated service, noted
	// by reconcile while it vacates (before any rollback).
	outdated bool

	slots    []*slot // considered slots in order: 1..replicas, or eligible nodes
	excess   []*slot // replicated slots beyond replicas, highest first
	idle     []*slot // global slots on nodes that keep but get no tasks (paused)
	dead     []*slot // global slots on nodes whose tasks must go
	cs       []placement.Constraint
	prefs    []placement.Preference
	upd      updater
	newTasks []*taskRef
	toPlace  []*taskRef

	// Rebalancing (rebalance.go): ready current tasks that may move, how
	// many moves are in flight, the tasks they replace, and whether a move
	// may not start now.
	movable  []*taskRef
	moving   int
	replaced map[string]bool
	noMoves  bool

	// level is what the spec needs of a node's agent (servicespec.MinLevel,
	// and placement.SharesLevel on a network with allocated shares).
	level placement.LevelNeed
	// shares are the spec's networks with allocated node shares.
	shares []*placement.NetShares
	// hostPorts are the spec's host-mode published ports: a node holding
	// one already takes no task of the service (placement.HostPortFilter).
	hostPorts []placement.HostPort
}

func newSvcRun(r *run, svc api.Service, tasks []*taskRef) *svcRun {
	s := &svcRun{r: r, orig: svc, tasks: tasks}
	s.setService(svc)
	return s
}

// setService (re)derives everything that depends on the service's spec.
func (s *svcRun) setService(svc api.Service) {
	s.svc = svc
	s.spec = planDefaults(svc.Spec)
	s.global = api.GlobalMode(s.spec.Mode)
	s.cur = map[uint64]bool{}
	s.cs = s.r.constraints(s.spec.Constraints)
	s.prefs, _ = placement.ParsePreferences(s.spec.PlacementPreferences) // validated before stored
	s.level.Level, s.level.Fields = servicespec.MinLevel(&s.spec)
	s.shares = s.r.specShares(s.spec)
	s.hostPorts = placement.HostPortsOf(&s.spec)
	for _, ns := range s.shares {
		// An older agent finds no share of its own on such a network.
		switch what := "network " + ns.Name; {
		case placement.SharesLevel > s.level.Level:
			s.level.Level, s.level.Fields = placement.SharesLevel, []string{what}
		case placement.SharesLevel == s.level.Level:
			s.level.Fields = append(s.level.Fields, what)
		}
	}
}

// planDefaults fills the fields Plan needs but, unlike Defaults, keeps
// Replicas 0 and Parallelism 0 (all at once) as stored.
func planDefaults(spec api.ServiceSpec) api.ServiceSpec {
	if spec.Mode == "" {
		spec.Mode = api.ModeReplicated
	}
	if spec.RestartPolicy.Condition == "" {
		spec.RestartPolicy.Condition = api.RestartAny
	}
	spec.UpdateConfig = servicespec.UpdateDefaults(spec.UpdateConfig, false)
	spec.RollbackConfig = servicespec.UpdateDefaults(spec.RollbackConfig, false)
	return spec
}

// current reports whether t runs the service's spec (same version, or a
// version that differs only in immaterial fields such as replicas).
func (s *svcRun) current(t *api.Task) bool {
	if t.SpecVersion == s.svc.Version {
		return true
	}
	v, ok := s.cur[t.SpecVersion]
	if !ok {
		v = servicespec.MaterialEqual(&t.Spec, &s.svc.Spec)
		s.cur[t.SpecVersion] = v
	}
	return v
}

func (s *svcRun) reconcile() {
	r := s.r
	taskCons := map[uint64][]placement.Constraint{}
	var lastVer uint64
	var lastCons []placement.Constraint
	haveLast := false
	for _, ref := range s.tasks {
		v := ref.t.SpecVersion
		if !haveLast || v != lastVer {
			cs, ok := taskCons[v]
			if !ok {
				cs = r.constraints(ref.t.Spec.Constraints)
				taskCons[v] = cs
			}
			lastVer, lastCons, haveLast = v, cs, true
		}
		if s.keepAway(ref) {
			continue // its node may come back: neither vacated nor outdated
		}
		r.vacate(ref, lastCons)
		if api.IsJob(s.spec.Mode) {
			continue
		}
		// hasOutdated's test for a replicated service, while the task
		// record is at hand.
		if !s.global && !s.outdated {
			t := ref.t
			s.outdated = t.DesiredState == api.TaskRunning && t.Slot >= 1 &&
				uint64(t.Slot) <= s.spec.Replicas && !s.current(t)
		}
	}
	if api.IsJob(s.spec.Mode) {
		s.reconcileJob()
		return
	}
	s.updateStatusBefore()
	s.group()
	for _, sl := range s.slots {
		s.resolve(sl)
	}
	s.runUpdate()
	for _, sl := range s.excess {
		for _, ref := range sl.tasks {
			if ref.t.DesiredState == api.TaskRunning {
				r.shutdown(ref, "scaled down")
			}
		}
	}
	for _, sl := range s.dead {
		for _, ref := range sl.tasks {
			if ref.t.DesiredState == api.TaskRunning {
				r.shutdown(ref, "node no longer eligible")
			}
		}
	}
	for _, group := range [][]*slot{s.slots, s.excess, s.idle, s.dead} {
		for _, sl := range group {
			s.trim(sl)
		}
	}
	s.updateStatusAfter()
	s.noteRebalance()
	if s.svc.UpdateStatus != s.orig.UpdateStatus {
		out := s.svc
		out.Version = s.orig.Version
		r.svcOut = append(r.svcOut, out)
	}
	s.queuePlacement()
}

// queuePlacement hands the service's new and pending tasks to placeAll.
func (s *svcRun) queuePlacement() {
	r := s.r
	if len(s.toPlace) > 0 {
		r.places = append(r.places, &waiting{
			global: s.global,
			req: placement.Request{Level: s.level, Constraints: s.cs, Reservations: s.spec.Resources.Reservations,
				MaxPerNode: int(s.spec.MaxReplicasPerNode), Shares: s.shares, HostPorts: s.hostPorts},
			prefs: s.prefs,
			tasks: s.toPlace,
			all:   [2][]*taskRef{s.tasks, s.newTasks},
		})
	}
}

// reconcileJob applies node/scheduler/jobs' decision for a job service:
// no slots, updates or rebalancing; every write of the service runs the
// job again, and the planner never writes a job's service.
func (s *svcRun) reconcileJob() {
	r := s.r
	in := jobs.Input{Version: s.svc.Version, Global: s.global, Total: int(min(s.spec.Replicas, servicespec.MaxReplicas)),
		MaxConcurrent: int(s.spec.MaxConcurrent), Policy: s.spec.RestartPolicy, Keep: r.cfg.KeepTerminal,
		Tasks: make([]*api.Task, len(s.tasks)), Now: r.now, AtMostOnce: s.spec.AtMostOnce,
		SeenEnd: func(id string) time.Time { return r.seen.Ended[id] },
		Away:    func(i int) bool { return s.tasks[i].away },
		Held:    func(i int) bool { return s.heldByRemoval(s.tasks[i]) },
		GiveUp:  r.minLevel >= jobs.GiveUpLevel}
	for i, ref := range s.tasks {
		in.Tasks[i] = ref.t
	}
	if s.global {
		req := placement.Request{Constraints: s.cs}
		for _, n := range r.nodeList {
			if s.eligibleGlobal(n, &req) {
				in.Nodes = append(in.Nodes, n.Node.ID)
			}
		}
	}
	d := jobs.Decide(in)
	drop := func(ref *taskRef) {
		if !ref.deleted {
			ref.deleted = true
			r.deleted = append(r.deleted, ref.t.ID)
		}
	}
	for _, i := range d.Stop {
		r.shutdown(s.tasks[i], "the job runs again: the service was updated")
		if terminal(s.tasks[i].t.State) { // never placed: nobody reports it
			drop(s.tasks[i])
		}
	}
	for _, i := range d.Retire {
		r.shutdown(s.tasks[i], "")
	}
	for _, i := range d.Surplus {
		const why = "its slot completed on another task"
		ref := s.tasks[i]
		if !ref.away {
			r.shutdown(ref, why)
			continue
		}
		// Its node is down and will report nothing: written off as
		// vacate does, which the next plan would do anyway.
		e := r.edit(ref)
		e.State = api.TaskOrphaned
		e.DesiredState = api.TaskShutdown
		e.Message = "node down; " + why
		e.UpdatedAt = r.now
	}
	for _, i := range d.Finish {
		e := r.edit(s.tasks[i])
		e.DesiredState = api.TaskComplete
	}
	for _, i := range d.GiveUp {
		r.shutdown(s.tasks[i], "")
	}
	for _, i := range d.Delete {
		drop(s.tasks[i])
	}
	r.wakeAt(d.Wake)
	for _, ref := range s.tasks {
		if t := ref.t; t.State == api.TaskNew && t.DesiredState == api.TaskRunning && t.SpecVersion == s.svc.Version {
			s.toPlace = append(s.toPlace, ref)
		}
	}
	for _, st := range d.Start {
		if !r.take() {
			break
		}
		s.toPlace = append(s.toPlace, s.makeTask(st.Slot, st.Node))
	}
	s.queuePlacement()
}

// group sorts the service's tasks into slots.
func (s *svcRun) group() {
	if s.global {
		s.groupGlobal()
		return
	}
	// A count above MaxReplicas can only come from an older log (the API
	// refuses it): it is served as MaxReplicas, and tasks of higher slots
	// are excess.
	n := servicespec.MaxReplicas
	if s.spec.Replicas < servicespec.MaxReplicas {
		n = int(s.spec.Replicas)
	}
	// Two passes so that all slots share one backing array: one
	// allocation instead of one per slot.
	counts := make([]int32, n+2)
	for _, ref := range s.tasks {
		if k := ref.t.Slot; k >= 1 && k <= n {
			counts[k+1]++
		}
	}
	for k := 1; k <= n; k++ {
		counts[k+1] += counts[k]
	}
	backing := make([]*taskRef, counts[n+1])
	extra := map[int]*slot{}
	for _, ref := range s.tasks {
		k := ref.t.Slot
		if k >= 1 && k <= n {
			backing[counts[k]] = ref
			counts[k]++
			continue
		}
		sl := extra[k]
		if sl == nil {
			sl = &slot{num: k}
			extra[k] = sl
		}
		sl.tasks = append(sl.tasks, ref)
	}
	// A slot whose only task is current and running needs nothing but
	// the updater's bookkeeping (resolve would keep it, trim has no
	// history to drop): observe it here and make no slot for it.
	// counts[k] is now the end of slot k, counts[k-1] (or 0) its start.
	// An empty slot only ever gets a new task (resolve's default case), so
	// empty slots beyond the plan's creation budget are not made at all:
	// they count as busy for the updater and make the plan say More. This
	// keeps a plan's memory O(tasks + budget) for any replica count.
	var todo []int32
	empty := 0
	start := int32(0)
	for k := 1; k <= n; k++ {
		end := counts[k]
		if end == start {
			if empty >= s.r.budget {
				s.upd.busy++
				s.r.more = true
				continue
			}
			empty++
		}
		if end-start == 1 && !backing[start].away {
			t := backing[start].t
			if t.DesiredState == api.TaskRunning && t.State == api.TaskRunning && s.current(t) {
				s.upd.observe(s, t)
				s.noteMovable(backing[start])
				start = end
				continue
			}
		}
		todo = append(todo, int32(k)) // usually few: let it grow
		start = end
	}
	considered := make([]slot, len(todo))
	s.slots = make([]*slot, len(todo))
	for i, k := range todo {
		end := counts[k]
		start := int32(0)
		if k > 1 {
			start = counts[k-1]
		}
		sl := &considered[i]
		sl.num = int(k)
		// Full slice expression: appending a new task must not overwrite
		// the next slot's tasks.
		sl.tasks = backing[start:end:end]
		sortTasks(sl.tasks)
		s.slots[i] = sl
	}
	for _, sl := range extra {
		sortTasks(sl.tasks)
		s.excess = append(s.excess, sl)
	}
	sort.Slice(s.excess, func(i, j int) bool { return s.excess[i].num > s.excess[j].num })
}

// groupGlobal makes one slot per node: eligible nodes (ready, active,
// matching) are considered; paused or not-ready nodes keep their tasks;
// drained or non-matching nodes lose them.
func (s *svcRun) groupGlobal() {
	byNode := map[string]*slot{}
	for _, ref := range s.tasks {
		k := ref.t.NodeID
		sl := byNode[k]
		if sl == nil {
			sl = &slot{node: k}
			byNode[k] = sl
		}
		sl.tasks = append(sl.tasks, ref)
	}
	for _, sl := range byNode {
		sortTasks(sl.tasks)
	}
	req := placement.Request{Constraints: s.cs}
	for _, n := range s.r.nodeList {
		sl := byNode[n.Node.ID]
		if s.eligibleGlobal(n, &req) {
			if sl == nil {
				sl = &slot{node: n.Node.ID}
			}
			s.slots = append(s.slots, sl)
			delete(byNode, n.Node.ID)
		}
	}
	keys := make([]string, 0, len(byNode))
	for k := range byNode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sl := byNode[k]
		n := s.r.nodes[k]
		// An unfit node (a full disk) takes no new task but keeps the one
		// it has, as a paused node does.
		keep := n != nil && n.Node.Status != api.NodeDown &&
			n.Node.Availability != api.AvailabilityDrain && (n.Node.Status != api.NodeReady ||
			((n.Node.Availability == api.AvailabilityPause || n.Unfit != "") && s.matches(n)))
		if n != nil && n.Node.Status == api.NodeDown && s.r.now.Before(s.awayUntil(n)) {
			keep = true // its task is kept for it (keepAway)
		}
		if keep {
			s.idle = append(s.idle, sl)
		} else {
			s.dead = append(s.dead, sl)
		}
	}
}

func (s *svcRun) matches(n *placement.NodeInfo) bool {
	ok, _ := placement.MatchAll(s.cs, n.Node)
	return ok
}

// eligibleGlobal applies every filter but resources, protocol level and
// network shares: a node short of room or of address space, or whose
// agent is too old for the spec, still gets a (pending) task, so the user
// sees why it does not run (and the task starts once the node is upgraded
// or a share is free).
func (s *svcRun) eligibleGlobal(n *placement.NodeInfo, req *placement.Request) bool {
	for _, f := range s.r.cfg.Pipeline {
		switch f.(type) {
		case placement.ResourceFilter, placement.LevelFilter, placement.ShareFilter, placement.HostPortFilter:
			continue
		}
		if ok, _ := f.Check(n, req); !ok {
			return false
		}
	}
	return true
}

// better reports whether active task a is a better keeper than b: a live
// task over an ended one, a ready one (running and healthy) over one that
// is not; of two ready tasks the one that has run longest, so the original
// task of a node that came back after a blip stays and its replacement goes
// (nothing serving is restarted); otherwise the furthest along, then the
// newest.
func better(a, b *api.Task) bool {
	at, bt := terminal(a.State), terminal(b.State)
	if at != bt {
		return !at
	}
	if ra, rb := ready(a), ready(b); ra != rb {
		return ra
	} else if ra {
		return olderTask(a, b)
	}
	if rank(a.State) != rank(b.State) {
		return rank(a.State) > rank(b.State)
	}
	return olderTask(b, a)
}

// keepers picks the slot's best current and best outdated active tasks and
// shuts any other active task down.
func (s *svcRun) keepers(sl *slot) (c, o *taskRef) {
	moving := s.moves(sl)
	dups := false
	for _, ref := range sl.tasks {
		if ref.t.DesiredState != api.TaskRunning || ref.away || moving[ref] {
			continue
		}
		best := &o
		if s.current(ref.t) {
			best = &c
		}
		if *best == nil {
			*best = ref
			continue
		}
		dups = true
		if better(ref.t, (*best).t) {
			*best = ref
		}
	}
	if dups {
		kept := c
		if kept == nil {
			kept = o
		}
		for _, ref := range sl.tasks {
			if ref != c && ref != o && !ref.away && !moving[ref] && ref.t.DesiredState == api.TaskRunning {
				s.r.shutdown(ref, "duplicate task for slot: task "+kept.t.ID+" serves it")
			}
		}
	}
	return c, o
}

// resolve makes one considered slot converge: keep, restart, replace or
// offer it to the updater.
func (s *svcRun) resolve(sl *slot) {
	r := s.r
	c, o := s.keepers(sl)
	if c == nil && o == nil && s.spec.AtMostOnce && s.hasAway(sl) {
		// Its task may still run on the node that stopped answering: no
		// second one before that node is written off (keepAway).
		return
	}
	switch {
	case c != nil:
		s.upd.observe(s, c.t)
		if o != nil && ready(c.t) {
			r.shutdown(o, "replaced by task "+c.t.ID)
			o = nil
		}
		if o == nil && !s.hasAway(sl) {
			s.noteMovable(c)
		}
		if terminal(c.t.State) {
			if s.restart(sl, c.t) == restartpolicy.Now {
				r.shutdown(c, "")
				s.newTask(sl)
			}
			if o != nil && terminal(o.t.State) {
				r.shutdown(o, "")
				o = nil
			}
		} else if c.t.State == api.TaskNew {
			s.toPlace = append(s.toPlace, c)
		}
		if o != nil {
			s.upd.outdated++ // start-first update in progress
		}
	case o != nil:
		if o.t.State == api.TaskNew {
			// Never placed: replace it with a current task right away.
			r.shutdown(o, "")
			s.newTask(sl)
			return
		}
		if !terminal(o.t.State) {
			sl.old = o
			s.upd.candidates = append(s.upd.candidates, sl)
			return
		}
		switch s.restart(sl, o.t) {
		case restartpolicy.Now:
			r.shutdown(o, "")
			s.newTask(sl)
		case restartpolicy.Wait:
			s.upd.outdated++
		case restartpolicy.No:
			sl.old = o
			s.upd.candidates = append(s.upd.candidates, sl)
		}
	default:
		if s.stopping(sl) || s.stillRuns(sl) {
			s.upd.inFlight++
			return
		}
		s.newTask(sl)
	}
}

// stillRuns reports, for an at-most-once service, whether a task of the
// slot that was told to stop (scaled away, updated, removed from a node)
// may still run: until its node reports it stopped, or the node is written
// off (its own fence has stopped it by then), the slot gets no new task.
// A task orphaned with its removed node counts until removedUntil.
func (s *svcRun) stillRuns(sl *slot) bool {
	if !s.spec.AtMostOnce {
		return false
	}
	for _, ref := range sl.tasks {
		t, n := ref.t, ref.node
		if s.heldByRemoval(ref) {
			return true
		}
		if terminal(t.State) || t.State == api.TaskNew || n == nil {
			continue
		}
		if n.Node.Status == api.NodeDown {
			until := s.awayUntil(n)
			if !s.r.now.Before(until) {
				continue
			}
			s.r.wakeAt(until)
		}
		return true
	}
	return false
}

// heldByRemoval reports whether ref is an at-most-once task orphaned with
// its removed node that may still run there (removedUntil), and wakes the
// planner when it no longer may.
func (s *svcRun) heldByRemoval(ref *taskRef) bool {
	t := ref.t
	if !s.spec.AtMostOnce || ref.node != nil || t.State != api.TaskOrphaned || t.NodeID == "" {
		return false
	}
	until := s.removedUntil(t)
	if !s.r.now.Before(until) {
		return false
	}
	s.r.wakeAt(until)
	return true
}

// stopping reports whether the slot is in a stop-first update: an outdated
// task was told to shut down and still runs on a live node.
func (s *svcRun) stopping(sl *slot) bool {
	for _, ref := range sl.tasks {
		t := ref.t
		if t.DesiredState == api.TaskRunning || terminal(t.State) || t.State == api.TaskNew || s.current(t) {
			continue
		}
		if n := ref.node; n != nil && n.Node.Status == api.NodeReady && n.Node.Availability != api.AvailabilityDrain {
			return true
		}
	}
	return false
}

// newTask creates the slot's next task with the service's current spec. It
// is placed (or left pending) by placeAll.
//
// When the plan's creation budget is spent nothing is created: the slot
// still counts as busy for the updater, and the next plan (Plan.More)
// creates the task. Callers may already have shut the slot's old task down;
// the slot then looks empty to that next plan, which fills it.
func (s *svcRun) newTask(sl *slot) {
	r := s.r
	if !r.take() {
		s.upd.busy++
		return
	}
	ref := s.makeTask(sl.num, sl.node)
	sl.tasks = append(sl.tasks, ref)
	s.toPlace = append(s.toPlace, ref)
	s.upd.busy++
}

// makeTask creates (in the plan) a new task of the service for slot num, or
// for node on a global service, with the service's current spec. The
// caller has taken it from the creation budget and places it.
func (s *svcRun) makeTask(num int, node string) *taskRef {
	r := s.r
	sl := slot{num: num, node: node}
	// The tasks of a running update are those created since it started
	// (monitored). A leader whose clock is behind the one that started
	// it (a new leader, or an NTP step back) would date its tasks before
	// the start: their failures would go unseen and a failing update
	// would complete instead of pausing or rolling back.
	created := r.now
	if s.upd.active && created.Before(s.upd.startedAt) {
		created = s.upd.startedAt
	}
	t := &api.Task{
		ID:           r.cfg.NewID(),
		ServiceID:    s.svc.ID,
		Service:      s.svc.Spec.Name,
		Slot:         sl.num,
		NodeID:       sl.node,
		DesiredState: api.TaskRunning,
		State:        api.TaskNew,
		Image:        s.svc.Spec.Image,
		SpecVersion:  s.svc.Version,
		Spec:         s.svc.Spec,
		CreatedAt:    created,
		UpdatedAt:    r.now,
	}
	if t.Service == "" {
		t.Service = s.svc.Name
	}
	if s.global {
		t.Name = fmt.Sprintf("%s.%s", t.Service, api.ShortID(sl.node))
	} else {
		t.Name = fmt.Sprintf("%s.%d", t.Service, sl.num)
	}
	ref := &taskRef{t: t, owned: true, created: true, node: r.nodes[sl.node]}
	r.created = append(r.created, ref)
	s.newTasks = append(s.newTasks, ref)
	return ref
}

// trim deletes the oldest terminal tasks of a slot beyond the history kept.
// A terminal task whose desired state is still running is not history: it
// records that the slot ended and must not be restarted.
func (s *svcRun) trim(sl *slot) {
	keep := s.r.cfg.KeepTerminal
	if m := s.spec.RestartPolicy.MaxAttempts + 1; m > keep {
		keep = m
	}
	n := 0
	for i := len(sl.tasks) - 1; i >= 0; i-- {
		ref := sl.tasks[i]
		if ref.deleted || !terminal(ref.t.State) || ref.t.DesiredState == api.TaskRunning {
			continue
		}
		n++
		if n > keep && !ref.created {
			ref.deleted = true
			s.r.deleted = append(s.r.deleted, ref.t.ID)
		}
	}
}

// restart applies the restart policy (restartpolicy.Decide) to t, the
// slot's task that ended while its desired state was running, and wakes
// the planner when the replacement is due.
func (s *svcRun) restart(sl *slot, t *api.Task) restartpolicy.Action {
	tasks := func(yield func(*api.Task) bool) {
		for _, ref := range sl.tasks {
			if !yield(ref.t) {
				return
			}
		}
	}
	a, at := restartpolicy.Decide(s.spec.RestartPolicy, t, tasks, s.r.seen.Ended[t.ID], s.r.now)
	if a == restartpolicy.Wait {
		s.r.wakeAt(at)
	}
	return a
}
