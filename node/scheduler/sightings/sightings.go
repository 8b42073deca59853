// Package sightings is the planner's one memory between Plan calls: when
// it first saw each node down and each task event, by the leader's clock.
//
// The times a record carries come from other clocks: a down mark from the
// leader that wrote it, a task's end and start from the task's node. The
// planner (node/scheduler) counts its waits from these sights where the
// other clock could mislead it:
//
//   - an at-most-once task of a down node is written off grace plus stop
//     grace after the later of mark and sight (awayUntil): a mark from a
//     clock ahead of this leader's would have it replace the task before
//     the node's fence stopped it;
//   - an at-most-once task of a removed node likewise, after the later of
//     the removal (the task's orphaning) and its sight (removedUntil);
//   - a restart waits its delay after the earlier of end and sight
//     (restart): a node whose clock is ahead must not hold its tasks'
//     replacements back by the difference;
//   - a running task of an update is watched for Monitor after the later
//     of its start and the sight of it running (observe): a start dated by
//     a node whose clock is behind would end its window before the leader
//     saw it;
//   - rebalancing waits its delay after the sight of the last move's start
//     and its backoff after the sight of a failed move (noteRebalance),
//     ignoring the node's dates: ahead they held moves back by the
//     difference, behind they let moves follow each other with no pause.
//
// Pure but for that memory: no clock is read (the caller passes now) and
// the FSM never sees any of it. The leader makes one planner, so one
// Memory, per term: a new leader waits each of them out once more.
package sightings

import (
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Memory holds the first sights; the zero value is ready. Safe for
// concurrent use.
type Memory struct {
	mu   sync.Mutex
	seen map[string]sighting
}

// sighting is a first sight of a node down or of a task event: the time
// the record gave for it and when it was first seen with that time.
type sighting struct{ at, seen time.Time }

// Sights are one plan's first sights by node or task ID.
type Sights struct {
	// Down: nodes down (Node.StatusChangedAt).
	Down map[string]time.Time
	// Ended: tasks that ended while meant to run (Task.UpdatedAt).
	Ended map[string]time.Time
	// Started: running tasks of a service that updates (Task.StartedAt).
	Started map[string]time.Time
	// MoveStart and MoveFail: rebalancing moves (Task.Replaces set) that
	// started (StartedAt) or failed (UpdatedAt).
	MoveStart, MoveFail map[string]time.Time
	// Removed: tasks orphaned with their node, which left the state (node
	// rm; Task.UpdatedAt, the removal's time).
	Removed map[string]time.Time
}

// Saw records the first sight of each node that is down, of each task
// that ended while meant to run, of each running task of a service that
// updates and of each rebalancing move that started or failed, forgets
// the others, and returns the sight times (not changed afterwards: the
// next call makes new maps). A record whose time changed (a node down
// again, a task that ended again) counts as a new event, seen now.
func (m *Memory) Saw(nodes []api.Node, services []api.Service, tasks []api.Task, now time.Time) Sights {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[string]sighting{}
	// key: a node and a task never share one ("n"/"t" before the ID).
	note := func(out map[string]time.Time, key, id string, at time.Time) {
		s, ok := m.seen[key]
		if !ok || !s.at.Equal(at) {
			s = sighting{at: at, seen: now}
		}
		next[key], out[id] = s, s.seen
	}
	x := Sights{Down: map[string]time.Time{}, Ended: map[string]time.Time{}, Started: map[string]time.Time{},
		MoveStart: map[string]time.Time{}, MoveFail: map[string]time.Time{}, Removed: map[string]time.Time{}}
	present := make(map[string]bool, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		present[n.ID] = true
		if n.Status == api.NodeDown {
			note(x.Down, "n"+n.ID, n.ID, n.StatusChangedAt)
		}
	}
	updating := map[string]bool{}
	for i := range services {
		if u := services[i].UpdateStatus; u != nil && (u.State == api.UpdateUpdating || u.State == api.UpdateRollbackStarted) {
			updating[services[i].ID] = true
		}
	}
	for i := range tasks {
		switch t := &tasks[i]; {
		case t.DesiredState == api.TaskRunning && terminal(t.State):
			note(x.Ended, "t"+t.ID, t.ID, t.UpdatedAt)
		case t.State == api.TaskRunning && updating[t.ServiceID]:
			note(x.Started, "s"+t.ID, t.ID, t.StartedAt)
		}
		if t := &tasks[i]; t.State == api.TaskOrphaned && t.NodeID != "" && !present[t.NodeID] {
			note(x.Removed, "r"+t.ID, t.ID, t.UpdatedAt)
		}
		if t := &tasks[i]; t.Replaces != "" {
			if t.State == api.TaskFailed || t.State == api.TaskRejected {
				note(x.MoveFail, "f"+t.ID, t.ID, t.UpdatedAt)
			}
			if !t.StartedAt.IsZero() {
				note(x.MoveStart, "m"+t.ID, t.ID, t.StartedAt)
			}
		}
	}
	m.seen = next
	return x
}

// terminal is api.TaskTerminal without the map lookup (one call per
// stored task per plan).
func terminal(state string) bool {
	switch state {
	case api.TaskComplete, api.TaskFailed, api.TaskShutdown, api.TaskRejected, api.TaskOrphaned:
		return true
	}
	return false
}
