// Package restartpolicy decides what becomes of a replicated or global
// task whose container ended while it was meant to run (swarmkit's
// restart supervisor, as a pure function of the stored tasks): replace it
// now, at a later time, or never. The planner (node/scheduler) keeps the
// ended task with desired state running until then; that record is what
// makes a "never" stick.
package restartpolicy

import (
	"iter"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Action is what becomes of the ended task.
type Action int

const (
	// No: the slot is done (condition none, on-failure after a clean
	// exit, or MaxAttempts reached); it keeps its ended task.
	No Action = iota
	// Wait: the replacement is due at the time Decide returns.
	Wait
	// Now: replace the task now.
	Now
)

// Decide applies policy rp to t, the slot's task that ended while its
// desired state was running, at time now.
//
// Attempts are the slot's ended tasks (slot yields every task of the
// slot, t among them) created within rp.Window (0 = forever): the first
// run is not a restart, so MaxAttempts 2 allows three runs.
//
// The delay counts from the end the node dated (t.UpdatedAt) or, when
// earlier, from seenEnd, the planner's first sight of it (zero: none):
// a node whose clock is ahead of the leader's must not hold the
// replacement back by the difference.
func Decide(rp api.RestartPolicy, t *api.Task, slot iter.Seq[*api.Task], seenEnd, now time.Time) (Action, time.Time) {
	switch rp.Condition {
	case api.RestartNone:
		return No, time.Time{}
	case api.RestartOnFailure:
		if t.State == api.TaskComplete && t.ExitCode == 0 {
			return No, time.Time{}
		}
	}
	if rp.MaxAttempts > 0 {
		since := time.Time{}
		if rp.Window > 0 {
			since = now.Add(-rp.Window)
		}
		ended := 0
		for x := range slot {
			switch x.State {
			case api.TaskFailed, api.TaskComplete, api.TaskRejected:
				if !x.CreatedAt.Before(since) {
					ended++
				}
			}
		}
		if ended-1 >= rp.MaxAttempts {
			return No, time.Time{}
		}
	}
	end := t.UpdatedAt
	if !seenEnd.IsZero() && seenEnd.Before(end) {
		end = seenEnd
	}
	if at := end.Add(rp.DelayPeriod()); at.After(now) {
		return Wait, at
	}
	return Now, time.Time{}
}
