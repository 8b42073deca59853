package node

// The reconciler runs on every node. It closes the gap between the tasks the
// leader assigned to this node (desired, from the local replica) and the
// containers the runtime reports (actual):
//
//	compute(tasks, containers) → actions      (pure, table-tested)
//	apply(actions)                            (runtime calls, status reports)
//
// It runs a full pass at start, on every state change and container event,
// and every few seconds. Status reports go to the leader in batches. It never
// removes a container for a task it does not know until the local replica
// has caught up with the leader, so an agent restart (or a node coming back
// from a partition) never kills healthy containers by mistake.
//
// A task that served traffic is not stopped the moment the leader says so:
// drainStops (pure, table-tested) holds its stop until every live node's load
// balancer has synced past the Raft entry that took it out (each node gossips
// the index its load balancer reflects), drainPeriod at most, so a rolling
// update or a scale-down refuses no connection and waits no fixed time.
//
// Fencing: a node that has not heard from a leader for a service's disconnect
// grace period stops that service's at-most-once tasks (fenceActions, pure):
// by then the leader may replace them elsewhere (node/scheduler/calm.go).

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/runtime"
)

type actionKind int

const (
	actStart  actionKind = iota // prepare image, create and start the task's container
	actStop                     // stop the running container of a task
	actRemove                   // remove a container (task gone or long finished)
	actReport                   // report an observed state to the leader
)

type action struct {
	kind      actionKind
	task      *api.Task
	container *api.Container
	status    api.TaskStatus
}

// computeActions is the pure half of the reconciler.
func computeActions(nodeID string, tasks []*api.Task, containers []api.Container, synced bool, now time.Time) []action {
	byTask := map[string]api.Container{}
	for _, c := range containers {
		if c.TaskID == "" {
			continue
		}
		if old, ok := byTask[c.TaskID]; ok && old.CreatedAt.After(c.CreatedAt) {
			continue
		}
		byTask[c.TaskID] = c
	}
	known := map[string]bool{}
	var acts []action
	report := func(t *api.Task, st api.TaskStatus) {
		if api.TaskStateOrder[st.State] < api.TaskStateOrder[t.State] {
			return
		}
		if st.State == t.State && st.Health == t.Health && st.ContainerID == t.ContainerID {
			return
		}
		st.TaskID = t.ID
		st.Timestamp = now
		acts = append(acts, action{kind: actReport, task: t, status: st})
	}
	for _, t := range tasks {
		if t.NodeID != nodeID {
			continue
		}
		known[t.ID] = true
		c, has := byTask[t.ID]
		switch {
		case t.DesiredState == api.TaskRunning && !api.TaskTerminal(t.State):
			if !has {
				if api.TaskStateOrder[t.State] >= api.TaskStateOrder[api.TaskStarting] && t.ContainerID != "" {
					// It had a container that is gone (removed by hand or
					// lost with the machine): the task failed.
					report(t, api.TaskStatus{State: api.TaskFailed, Error: "container disappeared", ExitCode: -1, ContainerID: t.ContainerID})
					continue
				}
				acts = append(acts, action{kind: actStart, task: t})
				continue
			}
			switch c.State {
			case api.ContainerRunning:
				if c.Health == api.HealthUnhealthy {
					cc := c
					acts = append(acts, action{kind: actStop, task: t, container: &cc})
					report(t, api.TaskStatus{State: api.TaskFailed, Error: "task: container unhealthy", ExitCode: c.ExitCode, ContainerID: c.ID, Health: c.Health})
					continue
				}
				report(t, api.TaskStatus{State: api.TaskRunning, ContainerID: c.ID, Health: c.Health, IP: c.IP})
			case api.ContainerCreated:
				// Created but never started: the agent died between the
				// two steps. Remove it; the next pass starts a fresh one.
				// (A start in flight also passes through created: pass()
				// skips the removal while it runs.)
				cc := c
				acts = append(acts, action{kind: actRemove, task: t, container: &cc})
			case api.ContainerExited:
				st := api.TaskStatus{State: api.TaskComplete, ExitCode: c.ExitCode, ContainerID: c.ID}
				if c.ExitCode != 0 {
					st.State = api.TaskFailed
					st.Error = fmt.Sprintf("task: non-zero exit (%d)", c.ExitCode)
				}
				report(t, st)
			}
		default: // desired shutdown (or the task is finished)
			if has && c.State == api.ContainerRunning {
				cc := c
				acts = append(acts, action{kind: actStop, task: t, container: &cc})
				continue
			}
			if !api.TaskTerminal(t.State) {
				st := api.TaskStatus{State: api.TaskShutdown, ContainerID: t.ContainerID}
				if has {
					st.ExitCode = c.ExitCode
				}
				report(t, st)
			}
		}
	}
	if synced {
		for id, c := range byTask {
			if !known[id] {
				cc := c
				acts = append(acts, action{kind: actRemove, container: &cc})
			}
		}
	}
	return acts
}

// drainPeriod is the most a node keeps the container of a task that served
// traffic running after it first sees the leader's order to stop it. Every
// node applies the same Raft entry at about the same time and drops the task
// from its load balancer then (servesTraffic); the container must outlive
// the slowest of them, or a connection some node still sends it is refused.
// Nodes say how far their load balancer got (gossip metadata, lbsync.go), so
// the stop usually goes out as soon as the last of them got there; this
// period is the cap for a node that does not say (an older agent) or whose
// word is slow to arrive. Swarm waits a fixed 2s. Connections already
// established keep their conntrack entry and finish within this period.
const drainPeriod = 2 * time.Second

// drainMark is what a node notes when it first sees the order to stop a task
// that served traffic: when, and its store's index then (at or after the
// entry that gave the order).
type drainMark struct {
	At    time.Time
	Index uint64
}

// drainStops is the pure half of draining: it holds back every stop of a
// container whose task was told to stop while it served traffic until every
// live node's load balancer has synced through the index this node had
// applied when it first saw that order (lbs: node ID → index, this node
// included), or period has passed since then. seen maps task ID to that
// first sight (the caller keeps it between passes and must not change it);
// index is the store's index read after the tasks the actions were computed
// from. drainStops returns the actions to do now, the map to keep (tasks
// whose stop is being drained or was just released), and the earliest time a
// held stop is due anyway (zero when none is held). Stops of tasks that
// served no traffic (never healthy, no address, already reported stopped) and
// of tasks still meant to run (unhealthy, fenced) are not delayed.
func drainStops(acts []action, seen map[string]drainMark, now time.Time, index uint64, lbs map[string]uint64, period time.Duration) ([]action, map[string]drainMark, time.Time) {
	out := acts[:0:0]
	next := map[string]drainMark{}
	var wake time.Time
	for _, act := range acts {
		if act.kind != actStop || act.task.DesiredState == api.TaskRunning || !servesTraffic(act.task) {
			out = append(out, act)
			continue
		}
		first, ok := seen[act.task.ID]
		if !ok {
			first = drainMark{At: now, Index: index}
		}
		next[act.task.ID] = first
		if due := first.At.Add(period); now.Before(due) && !lbsPast(lbs, first.Index) {
			if wake.IsZero() || due.Before(wake) {
				wake = due
			}
			continue
		}
		out = append(out, act)
	}
	return out, next, wake
}

// lbsPast reports whether every load balancer in lbs has synced through
// index (false when there are none: nobody said).
func lbsPast(lbs map[string]uint64, index uint64) bool {
	if len(lbs) == 0 || index == 0 {
		return false
	}
	for _, i := range lbs {
		if i < index {
			return false
		}
	}
	return true
}

// fenceActions is the pure half of fencing. quiet is how long this node has
// not heard from a leader (0 on the leader). Every task assigned here that
// is meant to run, of a service that is at most once (specs: the services'
// current specs by ID; the task's own copy when missing) whose disconnect
// grace has passed in quiet, is fenced: no start, and its running container
// is stopped (the leader may start its replacement elsewhere once the grace
// period and the stop grace period have passed since it marked this node
// down, which is never before this node last heard from it).
func fenceActions(acts []action, nodeID string, tasks []*api.Task, containers []api.Container, specs map[string]api.ServiceSpec, quiet time.Duration) []action {
	if quiet <= 0 {
		return acts
	}
	fenced := map[string]*api.Task{}
	for _, t := range tasks {
		if t.NodeID != nodeID || t.DesiredState != api.TaskRunning || api.TaskTerminal(t.State) {
			continue
		}
		spec, ok := specs[t.ServiceID]
		if !ok {
			spec = t.Spec
		}
		if spec.AtMostOnce && quiet >= scheduler.DisconnectGrace(spec) {
			fenced[t.ID] = t
		}
	}
	if len(fenced) == 0 {
		return acts
	}
	out := acts[:0:0]
	stopping := map[string]bool{}
	for _, act := range acts {
		if act.task != nil && fenced[act.task.ID] != nil {
			switch act.kind {
			case actStart:
				continue
			case actStop:
				stopping[act.container.ID] = true
			}
		}
		out = append(out, act)
	}
	for _, c := range containers {
		t := fenced[c.TaskID]
		if t == nil || c.State != api.ContainerRunning || stopping[c.ID] {
			continue
		}
		cc := c
		out = append(out, action{kind: actStop, task: t, container: &cc})
	}
	return out
}

// reconciler owns the per-node loop state.
type reconciler struct {
	a  *Agent
	cl *cluster

	mu       sync.Mutex
	starting map[string]bool // task IDs with a start in flight
	stopping map[string]bool
	pending  map[string]api.TaskStatus
	kick     chan struct{}
	since    time.Time
	// drainSeen and drainTimer belong to the loop goroutine (pass): when
	// this node first saw each draining task's stop order, and the timer
	// that runs the pass that stops the next one.
	drainSeen  map[string]drainMark
	drainTimer *time.Timer
	// contact (loop goroutine) is when this node last heard from a leader
	// (or was one), for fencing.
	contact time.Time
	// flush asks reportLoop to send the queued reports now; queued tells
	// it that reports wait for the next retry (both one slot, coalescing).
	flush  chan struct{}
	queued chan struct{}
}

func (a *Agent) reconcileLoop(ctx context.Context, cl *cluster) {
	r := &reconciler{a: a, cl: cl, starting: map[string]bool{}, stopping: map[string]bool{},
		pending: map[string]api.TaskStatus{}, kick: make(chan struct{}, 1), since: time.Now(),
		flush: make(chan struct{}, 1), queued: make(chan struct{}, 1)}
	r.contact = r.since
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); r.reportLoop(ctx) }()
	defer func() {
		if r.drainTimer != nil {
			r.drainTimer.Stop()
		}
	}()

	storeCh, cancelStore := cl.store.Subscribe()
	defer cancelStore()
	evCh := a.rt.Subscribe()
	defer a.rt.Unsubscribe(evCh)
	lbCh, cancelLB := cl.members.LBSubscribe()
	defer cancelLB()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		r.pass(ctx, &wg)
		// Load balancer progress matters only while a stop is drained.
		var drainCh <-chan struct{}
		if len(r.drainSeen) > 0 {
			drainCh = lbCh
		}
		// Coalesce bursts: wait for a change, then a short quiet period.
		select {
		case <-ctx.Done():
			return
		case <-storeCh:
		case <-evCh:
		case <-r.kick:
		case <-drainCh:
			continue // the held stops are due or not: no need to coalesce
		case <-tick.C:
			continue // a resync is no burst: no need to coalesce (one wake-up, not two)
		}
		timer := time.NewTimer(20 * time.Millisecond)
	drain:
		for {
			select {
			case <-storeCh:
			case <-evCh:
			case <-timer.C:
				break drain
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
	}
}

// synced reports whether the local replica has caught up with a leader.
func (r *reconciler) synced() bool {
	leader, _ := r.cl.raft.Leader()
	return leader != "" && r.cl.raft.CaughtUp()
}

func (r *reconciler) pass(ctx context.Context, wg *sync.WaitGroup) {
	a := r.a
	tasks := r.cl.store.TasksByNode(a.id.NodeID)
	// Reports not yet flushed count as the task's state, so one state is
	// reported once.
	r.mu.Lock()
	for i, t := range tasks {
		if st, ok := r.pending[t.ID]; ok {
			tt := *t
			tt.State, tt.Health, tt.ContainerID = st.State, st.Health, st.ContainerID
			tasks[i] = &tt
		}
	}
	r.mu.Unlock()
	// Read after the tasks: every order they carry is at or before index.
	index := r.cl.store.Index()
	now := time.Now().UTC()
	containers := a.rt.List()
	acts := computeActions(a.id.NodeID, tasks, containers, r.synced(), now)
	acts = fenceActions(acts, a.id.NodeID, tasks, containers, r.specs(tasks), r.quiet(now))
	// Stops of tasks that served traffic wait until every node has dropped
	// them from its load balancer.
	acts, seen, wake := drainStops(acts, r.drainSeen, now, index, r.cl.members.LBIndexes(a.id.NodeID), drainPeriod)
	r.drainSeen = seen
	if !wake.IsZero() {
		if r.drainTimer != nil {
			r.drainTimer.Stop()
		}
		r.drainTimer = time.AfterFunc(wake.Sub(now), r.signal)
	}
	for _, act := range acts {
		act := act
		switch act.kind {
		case actReport:
			r.queue(act.status)
		case actStart:
			if !r.claim(r.starting, act.task.ID) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.release(r.starting, act.task.ID)
				r.start(ctx, act.task)
			}()
		case actStop:
			if !r.claim(r.stopping, act.container.ID) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.release(r.stopping, act.container.ID)
				grace := act.task.Spec.StopGracePeriod
				if grace <= 0 {
					grace = 10 * time.Second
				}
				if _, err := a.rt.Stop(ctx, act.container.ID, grace); err != nil {
					a.log.Warn("stop task container", "task", act.task.Name, "err", err)
				}
				r.signal()
			}()
		case actRemove:
			if act.task != nil && r.busy(r.starting, act.task.ID) {
				continue
			}
			if !r.claim(r.stopping, act.container.ID) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.release(r.stopping, act.container.ID)
				// The decision was made on a snapshot: a container listed as
				// created may be running by now. Force (SIGKILL) only when
				// its task is gone; a leftover of a known task is removed
				// only if it is still not running (the next pass decides).
				force := act.task == nil
				if err := a.rt.Remove(ctx, act.container.ID, force); err != nil && !errors.Is(err, runtime.ErrRunning) {
					a.log.Warn("remove container", "container", shortID(act.container.ID), "err", err)
				}
			}()
		}
	}
	r.gcFinished(ctx, tasks)
	r.mu.Lock()
	keep := make(map[string]bool, len(r.starting))
	for id := range r.starting {
		keep[id] = true
	}
	r.mu.Unlock()
	a.gcTaskFiles(keep)
}

// quiet returns how long this node has not heard from a leader, for
// fencing: 0 on the leader. A node whose own record in its replica has been
// down for longer counts from then: it hears the log, but the leader does not
// hear it (gossip), and will replace its at-most-once tasks.
func (r *reconciler) quiet(now time.Time) time.Duration {
	if r.cl.raft.IsLeader() {
		r.contact = now
		return 0
	}
	if lc := r.cl.raft.LastContact(); lc.After(r.contact) {
		r.contact = lc
	}
	q := now.Sub(r.contact)
	if self, err := r.cl.store.Node(r.a.id.NodeID); err == nil && self.Status == api.NodeDown &&
		!self.StatusChangedAt.IsZero() && now.Sub(self.StatusChangedAt) > q {
		q = now.Sub(self.StatusChangedAt)
	}
	return q
}

// specs returns the current specs of the services of tasks, by ID.
func (r *reconciler) specs(tasks []*api.Task) map[string]api.ServiceSpec {
	out := map[string]api.ServiceSpec{}
	for _, t := range tasks {
		if _, ok := out[t.ServiceID]; ok {
			continue
		}
		if s, err := r.cl.store.Service(t.ServiceID); err == nil && s != nil {
			out[t.ServiceID] = s.Spec
		}
	}
	return out
}

// gcFinished removes containers of terminal tasks once they are no longer
// among the newest few of their slot; the task history keeps their record.
func (r *reconciler) gcFinished(ctx context.Context, tasks []*api.Task) {
	keep := map[string]bool{}
	groups := map[string][]*api.Task{}
	for _, t := range tasks {
		k := fmt.Sprintf("%s/%d", t.ServiceID, t.Slot)
		groups[k] = append(groups[k], t)
	}
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool { return g[i].CreatedAt.After(g[j].CreatedAt) })
		for i, t := range g {
			if i < 2 || !api.TaskTerminal(t.State) {
				keep[t.ID] = true
			}
		}
	}
	known := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		known[t.ID] = true
	}
	for _, c := range r.a.rt.List() {
		if c.TaskID == "" || keep[c.TaskID] || c.State == api.ContainerRunning {
			continue
		}
		if known[c.TaskID] {
			// Not forced: the list is a snapshot, and a container that
			// started since must not be killed (the runtime refuses).
			_ = r.a.rt.Remove(ctx, c.ID, false)
		}
	}
}

func (r *reconciler) claim(m map[string]bool, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m[id] {
		return false
	}
	m[id] = true
	return true
}

func (r *reconciler) busy(m map[string]bool, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[id]
}

func (r *reconciler) release(m map[string]bool, id string) {
	r.mu.Lock()
	delete(m, id)
	r.mu.Unlock()
}

func (r *reconciler) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reconciler) queue(st api.TaskStatus) {
	r.mu.Lock()
	r.pending[st.TaskID] = st
	r.mu.Unlock()
	// Running and ended are what the scheduler waits for (the next batch,
	// the replacement of a stopped task); the steps before ride along with
	// them or with the next retry tick, to keep the writes few.
	ch := r.queued
	if st.State == api.TaskRunning || api.TaskTerminal(st.State) {
		ch = r.flush
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// start prepares the image and runs the task's container.
func (r *reconciler) start(ctx context.Context, t *api.Task) {
	a := r.a
	now := func() time.Time { return time.Now().UTC() }
	r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskPreparing, Timestamp: now()})
	r.waitNetwork(ctx)
	var creds imagedist.Creds
	if t.Spec.RegistryAuth != nil {
		creds = func(ctx context.Context) (*api.RegistryAuth, error) { return a.fetchRegistryAuth(ctx, r.cl, t) }
	}
	if err := a.ensureImage(ctx, r.cl, t.Spec.Image, creds); err != nil {
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: err.Error(), Timestamp: now()})
		return
	}
	files, err := a.prepareTaskFiles(ctx, r.cl, t)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: fmt.Sprintf("secrets and configs: %v", err), Timestamp: now()})
		return
	}
	spec := runtime.Spec{
		Name:        fmt.Sprintf("%s.%s", t.Name, shortID(t.ID)),
		Image:       t.Spec.Image,
		Command:     t.Spec.Command,
		Entrypoint:  t.Spec.Entrypoint,
		Env:         t.Spec.Env,
		Workdir:     t.Spec.Workdir,
		User:        t.Spec.User,
		Hostname:    t.Name,
		Limits:      t.Spec.Resources.Limits,
		TaskID:      t.ID,
		Labels:      map[string]string{"shoal.service": t.Service, "shoal.task": t.Name},
		Healthcheck: t.Spec.Healthcheck,
		StopGrace:   t.Spec.StopGracePeriod,
		Files:       files,
		Mounts:      t.Spec.Mounts,
	}
	r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskStarting, Timestamp: now()})
	c, err := a.rt.RunContainer(withNetworks(ctx, api.SpecNetworks(t.Spec)), spec)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: fmt.Sprintf("start container: %v", err), Timestamp: now()})
		return
	}
	r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRunning, ContainerID: c.ID, Health: c.Health, IP: c.IP, IPs: a.net.ips(c.ID), Timestamp: now()})
}

// networkGrace is how long a task start waits for the overlay after the
// reconciler started (a node that just joined learns its subnet within a
// second); past it tasks start with loopback only rather than never.
const networkGrace = 10 * time.Second

func (r *reconciler) waitNetwork(ctx context.Context) {
	for !r.a.net.ready() && time.Since(r.since) < networkGrace {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reportLoop flushes queued status reports to the leader in batches: as
// soon as a task is running or ended (after reportCoalesce, so that a burst
// of starts goes in one write), and reportRetry after anything else was
// queued (the earlier steps of a start) or a write failed. With nothing
// queued it sleeps: no timer runs on an idle node.
func (r *reconciler) reportLoop(ctx context.Context) {
	const (
		reportCoalesce = 5 * time.Millisecond
		reportRetry    = 100 * time.Millisecond
	)
	retry := time.NewTimer(reportRetry)
	retry.Stop()
	armed := false
	rearm := func() {
		if !armed {
			retry.Reset(reportRetry)
			armed = true
		}
	}
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.queued:
			rearm()
			continue
		case <-retry.C:
			armed = false
		case <-r.flush:
			t := time.NewTimer(reportCoalesce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.mu.Unlock()
			continue
		}
		batch := make([]api.TaskStatus, 0, len(r.pending))
		for _, st := range r.pending {
			batch = append(batch, st)
		}
		r.mu.Unlock()
		sort.Slice(batch, func(i, j int) bool { return batch[i].Timestamp.Before(batch[j].Timestamp) })
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := r.a.write(wctx, &consensus.TaskStatus{NodeID: r.a.id.NodeID, Statuses: batch})
		cancel()
		if err != nil {
			r.a.log.Debug("task status report failed; will retry", "err", err)
			rearm()
			continue
		}
		r.mu.Lock()
		for _, st := range batch {
			if cur, ok := r.pending[st.TaskID]; ok && reflect.DeepEqual(cur, st) {
				delete(r.pending, st.TaskID)
			}
		}
		left := len(r.pending)
		r.mu.Unlock()
		if left > 0 {
			rearm() // queued while the write was under way
		}
		r.signal()
	}
}
