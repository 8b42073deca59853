package scheduler

// Rolling updates, as a pure function of the stored tasks (swarmkit's
// manager/orchestrator/update, without its goroutines).
//
// A task is outdated when its spec differs materially from the service's
// (servicespec.MaterialEqual: image, command, env, resources,
// constraints…; a change of replicas or ports alone replaces nothing). While Service.UpdateStatus is
// updating (or rollback_started), each Plan call:
//
//   - counts slots in flight: a current task not yet ready (running and,
//     with a health check, healthy); a slot whose outdated task was told
//     to stop (stop-first) and still runs;
//   - judges failures (updatemonitor.Judge, pure): tasks of the update (current
//     spec, created since it started) that ended — failed, rejected or
//     complete — before running or within Monitor of starting. When
//     failures / slots of the update > MaxFailureRatio the FailureAction
//     applies: pause (UpdateStatus paused), rollback (Spec = PreviousSpec,
//     status rollback_started, the RollbackConfig drives it; a failing
//     rollback pauses as rollback_paused) or continue. The status message
//     names the failed task and its error;
//   - starts at most Parallelism − in-flight new slots (0 = all), but not
//     before the last updated task started running plus Delay; stop-first
//     shuts the old task down and creates the new one once it stopped,
//     start-first creates the new task at once and shuts the old one down
//     when the new one is ready;
//   - marks the update completed (rollback_completed, keeping the reason)
//     when no slot is outdated or in flight and Monitor has passed since the
//     last task of the update started (updatemonitor.Done, pure): until then a
//     task that fails still triggers the failure action. Without this wait
//     an update whose tasks die a second after starting "completed" before
//     the first of them failed.
//
// UpdateStatus is set to updating by Plan itself when outdated tasks appear
// and no update is recorded (nil, completed, rollback_completed). A paused
// update stays paused until the API writes a new status (or nil) with the
// next spec change.

import (
	"fmt"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/placement"
	"github.com/shoal-org/shoal/node/scheduler/updatemonitor"
)

// updater accumulates one service's update bookkeeping during a Plan call.
type updater struct {
	cfg         api.UpdateConfig
	active      bool // updating or rolling back, not paused
	rollingBack bool
	startedAt   time.Time
	inFlight    int     // slots being replaced before this plan
	busy        int     // slots this plan starts replacing or creates
	outdated    int     // outdated active tasks left after this plan
	candidates  []*slot // slots whose active task is outdated
	// lastStart is when the latest task created for the update started
	// running: the next batch waits Delay after it, and the update is not
	// complete before Monitor after it.
	lastStart time.Time
}

// ready reports whether t serves its slot: running and, when it has a
// health check, healthy. A task still in its health check's start period
// holds its slot in flight (swarmkit's executor reports such a task
// running only once it is healthy): a start-first update does not stop
// the old task, and the next batch does not start, before it can take
// traffic.
func ready(t *api.Task) bool {
	return t.State == api.TaskRunning && t.Health != api.HealthStarting && t.Health != api.HealthUnhealthy
}

// observe accounts for the slot's current active task t.
func (u *updater) observe(s *svcRun, t *api.Task) {
	if terminal(t.State) {
		return
	}
	if !ready(t) {
		u.inFlight++
		return
	}
	if !u.active || t.CreatedAt.Before(u.startedAt) {
		return // the rest is monitoring the tasks of this update
	}
	start := t.StartedAt
	if start.IsZero() {
		start = t.UpdatedAt
	}
	// The node's clock dates the start; one behind the leader's would
	// have the window end before it began (Planner.seen).
	if seen, ok := s.r.seen.Started[t.ID]; ok && seen.After(start) {
		start = seen
	}
	// A ready task no longer holds its slot in flight (as in swarmkit:
	// the monitor period decides what counts as a failure and when the
	// update is complete, not when the next batch starts), but the
	// planner wakes at the end of its window to close the update.
	s.r.wakeAt(start.Add(u.cfg.MonitorPeriod()))
	if start.After(u.lastStart) {
		u.lastStart = start
	}
}

// setStatus records a new update status on the working service; reconcile
// emits the service when the status pointer changed.
func (s *svcRun) setStatus(st api.UpdateStatus) {
	s.svc.UpdateStatus = &st
}

// hasOutdated reports whether a task that should keep running runs an
// outdated spec: for a replicated service, one in a slot up to Replicas
// (reconcile notes it while vacating); for a global one, one on an
// eligible node.
func (s *svcRun) hasOutdated() bool {
	if !s.global {
		return s.outdated
	}
	req := placement.Request{Constraints: s.cs}
	for _, ref := range s.tasks {
		t := ref.t
		if t.DesiredState != api.TaskRunning || s.current(t) {
			continue
		}
		if n := ref.node; n != nil && s.eligibleGlobal(n, &req) {
			return true
		}
	}
	return false
}

// updateStatusBefore starts, pauses or rolls back the service's update
// before its slots are resolved.
func (s *svcRun) updateStatusBefore() {
	u := &s.upd
	u.cfg = s.spec.UpdateConfig
	st := s.svc.UpdateStatus
	if (st == nil || st.State == api.UpdateCompleted || st.State == api.UpdateRollbackCompleted) && s.hasOutdated() {
		s.setStatus(api.UpdateStatus{State: api.UpdateUpdating, StartedAt: s.r.now, Message: "update in progress"})
		st = s.svc.UpdateStatus
	}
	if st == nil || (st.State != api.UpdateUpdating && st.State != api.UpdateRollbackStarted) {
		return
	}
	u.rollingBack = st.State == api.UpdateRollbackStarted
	if u.rollingBack {
		u.cfg = s.spec.RollbackConfig
	}
	u.active = true
	u.startedAt = st.StartedAt

	tasks, pending := s.monitored(st.StartedAt)
	v := updatemonitor.Judge(u.cfg, u.rollingBack, s.svc.PreviousSpec != nil, tasks, pending)
	switch v.Action {
	case "":
	case api.FailureRollback:
		s.rollback(v.Message)
	default:
		s.setStatus(api.UpdateStatus{State: v.State, StartedAt: st.StartedAt, Message: v.Message})
		u.active = false
	}
}

// rollback switches the working service to its previous spec. Tasks created
// for it in this plan carry SpecVersion Version+1 as a placeholder; the FSM
// gives the service its real version and servicespec.MaterialEqual
// recognises them.
func (s *svcRun) rollback(reason string) {
	svc := s.svc
	failed := svc.Spec
	svc.Spec = *svc.PreviousSpec
	svc.PreviousSpec = &failed
	svc.Version = s.orig.Version + 1
	svc.Mode, svc.Replicas, svc.Image, svc.Ports = svc.Spec.Mode, svc.Spec.Replicas, svc.Spec.Image, svc.Spec.Ports
	svc.UpdateStatus = &api.UpdateStatus{State: api.UpdateRollbackStarted, StartedAt: s.r.now, Message: reason}
	s.setService(svc)
	s.upd = updater{cfg: s.spec.RollbackConfig, active: true, rollingBack: true, startedAt: s.r.now}
}

// monitored lists the tasks the running update created (current spec,
// created since it started) and counts the slots it has yet to touch
// (an outdated task is meant to run there and no task of the update is).
func (s *svcRun) monitored(since time.Time) (tasks []updatemonitor.Task, pending int) {
	key := func(t *api.Task) string {
		if s.global {
			return t.NodeID
		}
		return strconv.Itoa(t.Slot)
	}
	updated := map[string]bool{}
	var outdated []string
	for _, ref := range s.tasks {
		t := ref.t
		if !s.current(t) {
			if t.DesiredState == api.TaskRunning && !ref.away && (s.global || (t.Slot >= 1 && uint64(t.Slot) <= s.spec.Replicas)) {
				outdated = append(outdated, key(t))
			}
			continue
		}
		if t.CreatedAt.Before(since) {
			continue
		}
		k := key(t)
		updated[k] = true
		tasks = append(tasks, updatemonitor.Task{ID: t.ID, Name: t.Name, Slot: k, State: t.State,
			Error: t.Error, StartedAt: t.StartedAt, EndedAt: t.UpdatedAt})
	}
	seen := map[string]bool{}
	for _, k := range outdated {
		if !updated[k] && !seen[k] {
			seen[k] = true
			pending++
		}
	}
	return tasks, pending
}

// runUpdate starts replacing the next outdated slots, within parallelism
// and after the delay.
func (s *svcRun) runUpdate() {
	u := &s.upd
	r := s.r
	n := 0
	if u.active && len(u.candidates) > 0 {
		n = len(u.candidates)
		if p := u.cfg.Parallelism; p > 0 {
			// Tasks this plan already created (stop-first slots whose old
			// task stopped, restarts) are in flight too.
			n = min(n, max(p-u.inFlight-u.busy, 0))
		}
		if u.cfg.Delay > 0 && !u.lastStart.IsZero() {
			if at := u.lastStart.Add(u.cfg.Delay); at.After(r.now) {
				r.wakeAt(at)
				n = 0
			}
		}
	}
	room := s.startFirstRoom(n)
	for _, sl := range u.candidates[:n] {
		o := sl.old
		switch {
		case terminal(o.t.State):
			r.shutdown(o, "")
			s.newTask(sl)
		case u.cfg.Order == api.OrderStartFirst && room > 0:
			room--
			s.newTask(sl)
			u.outdated++
		default:
			r.shutdown(o, fmt.Sprintf("updating to version %d", s.svc.Version))
			u.busy++
		}
	}
	u.outdated += len(u.candidates) - n
}

// startFirstRoom is how many of n start-first replacements fit under the
// service's max replicas per node: a start-first task runs beside the one
// it replaces until it is ready, and where the limit leaves no room it
// would stay pending and the update would wait forever. Slots beyond the
// room are updated stop-first (their old task stops first), so the limit
// holds and the update goes on. Room is the free places on the nodes that
// could run the service, less the tasks already waiting for one.
//
// A service publishing host-mode ports has no room at all: the new task
// could not bind the port beside the old one on its node, and on another
// node it would take the port from a slot of its own (every node may hold
// one), so its tasks are updated stop-first whatever the order.
func (s *svcRun) startFirstRoom(n int) int {
	if len(s.hostPorts) > 0 && s.upd.cfg.Order == api.OrderStartFirst {
		return 0
	}
	m := int(s.spec.MaxReplicasPerNode)
	if m == 0 || n == 0 || s.upd.cfg.Order != api.OrderStartFirst {
		return n
	}
	perNode := make([]int, len(s.r.nodeList))
	for _, ref := range s.tasks {
		if t := ref.t; ref.node != nil && t.DesiredState == api.TaskRunning && !terminal(t.State) {
			perNode[ref.node.Index]++
		}
	}
	room := -len(s.toPlace)
	req := placement.Request{Constraints: s.cs}
	for _, nd := range s.r.nodeList {
		if s.eligibleGlobal(nd, &req) {
			room += max(m-perNode[nd.Index], 0)
		}
	}
	return room
}

// updateStatusAfter marks the update done when nothing is left to replace
// and its last tasks have been watched for the monitor period.
func (s *svcRun) updateStatusAfter() {
	u := &s.upd
	if !u.active || u.outdated > 0 || u.inFlight > 0 || u.busy > 0 {
		return
	}
	if done, wake := updatemonitor.Done(u.lastStart, u.cfg.MonitorPeriod(), s.r.now); !done {
		s.r.wakeAt(wake)
		return
	}
	st := api.UpdateStatus{State: api.UpdateCompleted, Message: "update completed", CompletedAt: s.r.now}
	if prev := s.svc.UpdateStatus; prev != nil {
		st.StartedAt = prev.StartedAt
		if u.rollingBack {
			// Keep the reason of the rollback.
			st.State, st.Message = api.UpdateRollbackCompleted, "rollback completed"
			if prev.Message != "" {
				st.Message += " (" + prev.Message + ")"
			}
		}
	} else if u.rollingBack {
		st.State, st.Message = api.UpdateRollbackCompleted, "rollback completed"
	}
	s.setStatus(st)
}
