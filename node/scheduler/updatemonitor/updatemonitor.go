// Package updatemonitor is a rolling update's failure monitor, pure: which
// tasks of the update failed and what the update does then (Judge,
// swarmkit's failureTriggersAction over the stored tasks), and when an
// update whose slots are all replaced is complete (Done). node/scheduler's
// updater feeds it the tasks of the running update.
package updatemonitor

import (
	"fmt"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Task is what the failure monitor knows of one task created by the
// running update.
type Task struct {
	ID, Name  string
	Slot      string // slot number, or node ID for a global service
	State     string
	Error     string
	StartedAt time.Time // zero if it never ran
	EndedAt   time.Time // when it reached State (the task's UpdatedAt)
}

// Verdict is Judge's decision.
type Verdict struct {
	// Action is "" (go on), api.FailurePause or api.FailureRollback.
	Action string
	// State and Message are the update status to record.
	State   string
	Message string
}

// Judge is the update's failure monitor (swarmkit's
// failureTriggersAction, as a pure function of the stored tasks). A task of
// the update that ended — failed, rejected or even complete — before it ran
// or within cfg.Monitor of starting is a failure. When failures / slots of
// the update (those it touched plus pending, the ones it has yet to touch)
// exceed cfg.MaxFailureRatio, cfg.FailureAction applies: pause, rollback
// (a rollback that fails pauses instead: never roll back a rollback; no
// previous spec also pauses) or continue (go on as if nothing happened).
// The message names the latest failed task and why it failed.
func Judge(cfg api.UpdateConfig, rollingBack, canRollBack bool, tasks []Task, pending int) Verdict {
	slots := map[string]bool{}
	failures := 0
	var last *Task
	for i := range tasks {
		t := &tasks[i]
		slots[t.Slot] = true
		switch t.State {
		case api.TaskFailed, api.TaskRejected, api.TaskComplete:
		default:
			continue
		}
		if !t.StartedAt.IsZero() && t.EndedAt.Sub(t.StartedAt) > cfg.MonitorPeriod() {
			continue // it ran through its monitor period: not the update's fault
		}
		failures++
		if last == nil || t.EndedAt.After(last.EndedAt) || (t.EndedAt.Equal(last.EndedAt) && t.ID > last.ID) {
			last = t
		}
	}
	total := len(slots) + pending
	if failures == 0 || float64(failures)/float64(max(total, 1)) <= cfg.MaxFailureRatio {
		return Verdict{}
	}
	what := fmt.Sprintf("task %s (%s) %s", last.Name, last.ID, last.State)
	switch {
	case last.Error != "":
		what += ": " + last.Error
	case !last.StartedAt.IsZero():
		what += fmt.Sprintf(" %s after it started", last.EndedAt.Sub(last.StartedAt).Round(10*time.Millisecond))
	}
	if failures > 1 {
		what += fmt.Sprintf(" (%d failures in %d slots)", failures, total)
	}
	switch {
	case cfg.FailureAction == api.FailureContinue:
		return Verdict{}
	case rollingBack:
		return Verdict{Action: api.FailurePause, State: api.UpdateRollbackPaused, Message: "rollback paused: " + what}
	case cfg.FailureAction == api.FailureRollback && canRollBack:
		return Verdict{Action: api.FailureRollback, State: api.UpdateRollbackStarted, Message: "update rolled back: " + what}
	case cfg.FailureAction == api.FailureRollback:
		return Verdict{Action: api.FailurePause, State: api.UpdatePaused, Message: "update paused (no previous spec to roll back to): " + what}
	default:
		return Verdict{Action: api.FailurePause, State: api.UpdatePaused, Message: "update paused: " + what}
	}
}

// Done reports whether an update whose slots are all replaced is
// complete at now: Monitor has passed since its last task started (swarmkit
// keeps watching for one more monitoring period before declaring an update
// complete). Otherwise it returns when to look again.
func Done(lastStart time.Time, monitor time.Duration, now time.Time) (bool, time.Time) {
	if lastStart.IsZero() {
		return true, time.Time{}
	}
	end := lastStart.Add(monitor)
	if now.Before(end) {
		return false, end
	}
	return true, time.Time{}
}
