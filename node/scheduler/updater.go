package scheduler

// Rolling updates, as a pure function of the stored tasks (swarmkit's
// manager/orchestrator/update, without its goroutines).
//
// A task is outdated when its spec differs materially from the service's
// (materialEqual: image, command, env, resources, constraints…; a change of
// replicas or ports alone replaces nothing). While Service.UpdateStatus is
// updating (or rollback_started), each Plan call:
//
//   - counts slots in flight: a current task not yet running; a slot whose
//     outdated task was told to stop (stop-first) and still runs;
//   - checks failures: current tasks created since the update started that
//     ended (failed, rejected, complete) within Monitor of starting. When
//     failures/updated slots > MaxFailureRatio the FailureAction applies:
//     pause (UpdateStatus paused), rollback (Spec = PreviousSpec, status
//     rollback_started) or continue;
//   - starts at most Parallelism − in-flight new slots (0 = all), but not
//     before the last updated task started running plus Delay; stop-first shuts the
//     old task down and creates the new one once it stopped, start-first
//     creates the new task at once and shuts the old one down when the new
//     one runs;
//   - marks the update completed (rollback_completed) when no slot is
//     outdated or in flight.
//
// UpdateStatus is set to updating by Plan itself when outdated tasks appear
// and no update is recorded (nil, completed, rollback_completed). A paused
// update stays paused until the API writes a new status (or nil) with the
// next spec change.

import (
	"fmt"
	"time"

	"github.com/shoal-org/shoal/api"
)

// updater accumulates one service's update bookkeeping during a Plan call.
type updater struct {
	cfg         api.UpdateConfig
	active      bool // updating or rolling back, not paused
	rollingBack bool
	startedAt   time.Time
	inFlight    int       // slots being replaced before this plan
	busy        int       // slots this plan starts replacing or creates
	outdated    int       // outdated active tasks left after this plan
	candidates  []*slot   // slots whose active task is outdated
	lastSettle  time.Time // latest settle time of an updated task
}

// observe accounts for the slot's current active task t.
func (u *updater) observe(s *svcRun, t *api.Task) {
	if terminal(t.State) {
		return
	}
	if t.State != api.TaskRunning {
		u.inFlight++
		return
	}
	if !u.active {
		return // the rest is update monitoring
	}
	start := t.StartedAt
	if start.IsZero() {
		start = t.UpdatedAt
	}
	// A running task no longer holds its slot in flight (as in swarmkit:
	// the monitor period only decides what counts as a failure), but the
	// planner wakes at the end of the window to count late failures.
	if settle := start.Add(u.cfg.Monitor); u.active && settle.After(s.r.now) {
		s.r.wakeAt(settle)
	}
	if u.active && !t.CreatedAt.Before(u.startedAt) && start.After(u.lastSettle) {
		u.lastSettle = start
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
	req := Request{Constraints: s.cs}
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

	failures, updated, lastFailed := s.failures(st.StartedAt)
	if failures == 0 || float64(failures)/float64(updated) <= u.cfg.MaxFailureRatio {
		return
	}
	action := u.cfg.FailureAction
	if u.rollingBack && action == api.FailureRollback {
		action = api.FailurePause
	}
	what := "update"
	paused := api.UpdatePaused
	if u.rollingBack {
		what, paused = "rollback", api.UpdateRollbackPaused
	}
	switch action {
	case api.FailureContinue:
		return
	case api.FailureRollback:
		if s.svc.PreviousSpec != nil {
			s.rollback(lastFailed)
			return
		}
		s.setStatus(api.UpdateStatus{State: paused, StartedAt: st.StartedAt,
			Message: fmt.Sprintf("update paused: task %s failed and there is no previous spec to roll back to", lastFailed)})
	default:
		s.setStatus(api.UpdateStatus{State: paused, StartedAt: st.StartedAt,
			Message: fmt.Sprintf("%s paused due to failure or early termination of task %s", what, lastFailed)})
	}
	u.active = false
}

// rollback switches the working service to its previous spec. Tasks created
// for it in this plan carry SpecVersion Version+1 as a placeholder; the FSM
// gives the service its real version and materialEqual recognises them.
func (s *svcRun) rollback(failedTask string) {
	svc := s.svc
	failed := svc.Spec
	svc.Spec = *svc.PreviousSpec
	svc.PreviousSpec = &failed
	svc.Version = s.orig.Version + 1
	svc.Mode, svc.Replicas, svc.Image, svc.Ports = svc.Spec.Mode, svc.Spec.Replicas, svc.Spec.Image, svc.Spec.Ports
	svc.UpdateStatus = &api.UpdateStatus{
		State:     api.UpdateRollbackStarted,
		StartedAt: s.r.now,
		Message:   fmt.Sprintf("update rolled back due to failure or early termination of task %s", failedTask),
	}
	s.setService(svc)
	s.upd = updater{cfg: s.spec.RollbackConfig, active: true, rollingBack: true, startedAt: s.r.now}
}

// failures counts, among current tasks created since the update started,
// the slots updated and the tasks that ended within Monitor of starting.
func (s *svcRun) failures(since time.Time) (failures, updated int, lastFailed string) {
	slots := map[string]bool{}
	var last *api.Task
	for _, ref := range s.tasks {
		t := ref.t
		if t.CreatedAt.Before(since) || !s.current(t) {
			continue
		}
		key := t.NodeID
		if !s.global {
			key = fmt.Sprint(t.Slot)
		}
		slots[key] = true
		switch t.State {
		case api.TaskFailed, api.TaskRejected, api.TaskComplete:
			if t.StartedAt.IsZero() || t.UpdatedAt.Before(t.StartedAt.Add(s.upd.cfg.Monitor)) {
				failures++
				if last == nil || olderTask(last, t) {
					last = t
				}
			}
		}
	}
	if last != nil {
		lastFailed = last.ID
	}
	return failures, len(slots), lastFailed
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
		if u.cfg.Delay > 0 && !u.lastSettle.IsZero() {
			if at := u.lastSettle.Add(u.cfg.Delay); at.After(r.now) {
				r.wakeAt(at)
				n = 0
			}
		}
	}
	for _, sl := range u.candidates[:n] {
		o := sl.old
		switch {
		case terminal(o.t.State):
			r.shutdown(o, "")
			s.newTask(sl)
		case u.cfg.Order == api.OrderStartFirst:
			s.newTask(sl)
			u.outdated++
		default:
			r.shutdown(o, fmt.Sprintf("updating to version %d", s.svc.Version))
			u.busy++
		}
	}
	u.outdated += len(u.candidates) - n
}

// updateStatusAfter marks the update done when nothing is left to replace.
func (s *svcRun) updateStatusAfter() {
	u := &s.upd
	if !u.active || u.outdated > 0 || u.inFlight > 0 || u.busy > 0 {
		return
	}
	st := api.UpdateStatus{State: api.UpdateCompleted, Message: "update completed", CompletedAt: s.r.now}
	if u.rollingBack {
		st.State, st.Message = api.UpdateRollbackCompleted, "rollback completed"
	}
	if s.svc.UpdateStatus != nil {
		st.StartedAt = s.svc.UpdateStatus.StartedAt
	}
	s.setStatus(st)
}
