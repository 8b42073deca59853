// Package jobs decides what the tasks of a job service (api.ModeReplicatedJob,
// api.ModeGlobalJob) need, as docker's swarmkit job orchestrators do, as a
// pure function of the stored tasks: start tasks until the run has its
// completions (at most MaxConcurrent at once for a replicated job; one per
// eligible node for a global job, nodes that join later included), retry a
// task that failed as the restart policy says, never restart one that
// completed, and stop the tasks of an earlier run. The planner
// (node/scheduler) applies the decision.
//
// A run of the job is the service's version: the tasks of the current run
// carry it as SpecVersion. Every write of the service (update, --force,
// scale) gives it a new version and so runs the job again, as docker's
// JobIteration does; the planner never writes a job's service itself.
package jobs

import (
	"slices"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/restartpolicy"
)

// GiveUpLevel is the protocol level every node must advertise before a
// failed task that will not be retried is stored desired shutdown
// (Input.GiveUp; command.JobGiveUpLevel, restated: this package imports
// only api and restartpolicy).
const GiveUpLevel = 8

// Input is one job service and its tasks.
type Input struct {
	// Version is the service's version: the run its tasks must belong to.
	Version uint64
	// Global: one task to completion per node of Nodes; otherwise Total
	// completions over slots 1..Total, at most MaxConcurrent running
	// (0 = Total).
	Global        bool
	Total         int
	MaxConcurrent int
	// Nodes are the eligible nodes of a global job, in order.
	Nodes []string
	// Policy is the restart policy of a task that failed: a completed
	// task is never restarted, so condition any means on-failure.
	Policy api.RestartPolicy
	// Keep is how many retried (failed, replaced) tasks a slot keeps as
	// history.
	Keep int
	// Tasks are the service's tasks; the decision refers to them by index.
	Tasks []*api.Task
	// Away reports the tasks kept for a node that is down but within the
	// service's disconnect grace (node/scheduler's keepAway): still meant
	// to run, but nothing will come of them until the node is back. Their
	// slot starts again at once, as a replicated service's does, unless
	// AtMostOnce. nil: none.
	Away func(i int) bool
	// AtMostOnce: a slot never has two tasks running at once, so an away
	// task holds its slot until it is written off.
	AtMostOnce bool
	// Held reports the tasks that may still run though their record says
	// they ended: an at-most-once task orphaned with its removed node,
	// until that node's fence has surely stopped it (node/scheduler's
	// removedUntil). It holds its slot as a running task does. nil: none.
	Held func(i int) bool
	// SeenEnd is the planner's first sight of a task's end (zero: none),
	// for restartpolicy.Decide.
	SeenEnd func(id string) time.Time
	Now     time.Time
	// GiveUp: every node's agent is at GiveUpLevel, so a
	// failed task the restart policy will not retry may be stored desired
	// shutdown (Decision.GiveUp). An older leader reads a slot whose tasks
	// are all desired shutdown as empty and would run the job again, so
	// until then the task keeps desired running, as before.
	GiveUp bool
}

// Start is a task to create: Slot for a replicated job, Node for a global
// one.
type Start struct {
	Slot int
	Node string
}

// Decision is what the planner writes.
type Decision struct {
	// Stop: tasks of an earlier run still meant to run, desired shutdown.
	Stop []int
	// Retire: failed tasks whose slot starts again, desired shutdown (they
	// stay as history).
	Retire []int
	// Delete: terminal tasks of an earlier run, and retired history beyond
	// Keep.
	Delete []int
	// Surplus: tasks still meant to run in a slot that completed on
	// another task (a replacement and the original of a node that came
	// back both ran), desired shutdown.
	Surplus []int
	// Finish: tasks of the current run that completed (Success) but are
	// still desired running, desired complete: a finished job task is not
	// meant to run any more, and docker shows its desired state as
	// Complete. A Success task is done whatever its desired state
	// (classify), so this never starts it again.
	Finish []int
	// GiveUp: tasks of the current run that failed (api.JobFailed), are
	// still desired running and will not be retried (restart condition
	// none, or max attempts reached), desired shutdown: swarmkit's restart
	// supervisor shuts a failed task down whether or not it restarts it,
	// and docker shows "Shutdown  Failed". classify still reads such a
	// task as its slot's end, so the decision sticks. Only with
	// Input.GiveUp.
	GiveUp []int
	// Start: new tasks of the current run, slot order.
	Start []Start
	// Wake is when a restart delay ends (zero: none).
	Wake time.Time
	// Completed counts the slots of the current run that completed.
	Completed int
}

// state of one slot of the current run.
type state int

const (
	empty  state = iota // no task meant to run: start one
	away                // only a task kept for a down node: start one now
	active              // a task is meant to run and has not ended
	done                // a task completed with exit code 0
	ended               // its task ended otherwise while meant to run
)

type slot struct {
	tasks []int // indices, oldest first
}

// Success reports whether t is a completed run of a job task: complete
// with exit code 0.
func Success(t *api.Task) bool { return t.State == api.TaskComplete && t.ExitCode == 0 }

// Decide computes the decision for in. Pure.
func Decide(in Input) Decision {
	var d Decision
	rep := map[int]*slot{}
	glob := map[string]*slot{}
	for i, t := range in.Tasks {
		if t.SpecVersion != in.Version {
			switch {
			case terminal(t.State):
				d.Delete = append(d.Delete, i)
			case t.DesiredState == api.TaskRunning:
				d.Stop = append(d.Stop, i)
			}
			continue
		}
		if Success(t) && t.DesiredState == api.TaskRunning {
			d.Finish = append(d.Finish, i)
		}
		var sl *slot
		if in.Global {
			if sl = glob[t.NodeID]; sl == nil {
				sl = &slot{}
				glob[t.NodeID] = sl
			}
		} else {
			if sl = rep[t.Slot]; sl == nil {
				sl = &slot{}
				rep[t.Slot] = sl
			}
		}
		sl.tasks = append(sl.tasks, i)
	}
	for _, sl := range rep {
		in.sort(sl)
	}
	for _, sl := range glob {
		in.sort(sl)
	}
	if in.Global {
		for _, n := range in.Nodes {
			d.slot(in, glob[n], Start{Node: n}, -1)
		}
		for _, sl := range glob {
			if st, _ := in.classify(sl); st == done {
				d.Completed++
			}
		}
	} else {
		d.replicated(in, rep)
	}
	// Every slot's history, also of slots no longer considered (a node
	// that left), with the tasks retired now: the next plan, on the
	// state this one leaves, must have nothing to trim.
	retired := map[int]bool{}
	for _, i := range d.Retire {
		retired[i] = true
	}
	for _, sl := range rep {
		d.trim(in, sl, retired)
		d.surplus(in, sl)
	}
	for _, sl := range glob {
		d.trim(in, sl, retired)
		d.surplus(in, sl)
	}
	slices.Sort(d.Stop)
	slices.Sort(d.Surplus)
	slices.Sort(d.Delete)
	return d
}

// replicated decides the slots 1..Total of a replicated job, lowest first,
// within MaxConcurrent.
func (d *Decision) replicated(in Input, rep map[int]*slot) {
	limit := in.MaxConcurrent
	if limit <= 0 || limit > in.Total {
		limit = in.Total
	}
	running := 0
	for k := 1; k <= in.Total; k++ {
		if st, _ := in.classify(rep[k]); st == active {
			running++
		}
	}
	room := limit - running
	for k := 1; k <= in.Total; k++ {
		if d.slot(in, rep[k], Start{Slot: k}, room) {
			room--
		}
		if st, _ := in.classify(rep[k]); st == done {
			d.Completed++
		}
	}
}

// slot decides one considered slot (sl nil: no task yet); room < 0 is no
// limit. It reports whether it started a task.
func (d *Decision) slot(in Input, sl *slot, start Start, room int) bool {
	st, last := in.classify(sl)
	switch st {
	case empty, away:
		if room == 0 {
			return false
		}
		d.Start = append(d.Start, start)
		return true
	case ended:
		t := in.Tasks[last]
		// A completed slot never gets here (done), so condition any
		// acts as on-failure, as docker documents for jobs.
		rp := in.Policy
		var seen time.Time
		if in.SeenEnd != nil {
			seen = in.SeenEnd(t.ID)
		}
		tasks := func(yield func(*api.Task) bool) {
			for _, i := range sl.tasks {
				if !yield(in.Tasks[i]) {
					return
				}
			}
		}
		switch a, at := restartpolicy.Decide(rp, t, tasks, seen, in.Now); a {
		case restartpolicy.No:
			if in.GiveUp && t.DesiredState == api.TaskRunning && api.JobFailed(t) {
				d.GiveUp = append(d.GiveUp, last)
			}
		case restartpolicy.Now:
			if room == 0 {
				return false
			}
			d.Retire = append(d.Retire, last)
			d.Start = append(d.Start, start)
			return true
		case restartpolicy.Wait:
			if d.Wake.IsZero() || at.Before(d.Wake) {
				d.Wake = at
			}
		}
	}
	return false
}

// classify says what the slot holds and, when it ended, which task ended
// last while meant to run. A failed task desired shutdown (retired or
// given up, api.JobFailed) ended too: the slot's last one, with no live
// task after it, is the slot's end, which the restart policy decides
// again (a retired one whose replacement the plan could not create is
// retried, a given-up one stays given up). A task shut down otherwise
// (drained, constraints: state shutdown; its node lost: orphaned) leaves
// its slot empty, to run again.
func (in Input) classify(sl *slot) (state, int) {
	if sl == nil {
		return empty, -1
	}
	st, last := empty, -1
	for _, i := range sl.tasks {
		t := in.Tasks[i]
		switch {
		case Success(t):
			return done, i
		case in.Held != nil && in.Held(i):
			st = active
		case t.DesiredState == api.TaskShutdown && api.JobFailed(t):
			if st != active {
				st, last = ended, i
			}
		case t.DesiredState != api.TaskRunning:
		case !terminal(t.State) && !in.AtMostOnce && in.Away != nil && in.Away(i):
			if st == empty {
				st = away
			}
		case !terminal(t.State):
			st = active
		case st != active:
			st, last = ended, i
		}
	}
	return st, last
}

// surplus stops the tasks of a completed slot that are still meant to
// run: the slot's completion is counted once, whichever task made it.
func (d *Decision) surplus(in Input, sl *slot) {
	st, winner := in.classify(sl)
	if st != done {
		return
	}
	for _, i := range sl.tasks {
		if t := in.Tasks[i]; i != winner && t.DesiredState == api.TaskRunning && !terminal(t.State) {
			d.Surplus = append(d.Surplus, i)
		}
	}
}

// trim deletes a slot's retired tasks (terminal, desired shutdown) beyond
// in.Keep, oldest first; a completed task or one still meant to run is
// never history.
func (d *Decision) trim(in Input, sl *slot, retired map[int]bool) {
	// A slot's end (given up or not yet retried) is its record, not
	// history: deleting it would leave the slot empty, to run again.
	st, end := in.classify(sl)
	if st != ended {
		end = -1
	}
	n := 0
	for j := len(sl.tasks) - 1; j >= 0; j-- {
		i := sl.tasks[j]
		t := in.Tasks[i]
		if !terminal(t.State) || (t.DesiredState == api.TaskRunning && !retired[i]) || Success(t) || (i == end && !retired[i]) {
			continue
		}
		if n++; n > in.Keep {
			d.Delete = append(d.Delete, i)
		}
	}
}

// sort orders a slot's tasks oldest first (CreatedAt, then ID).
func (in Input) sort(sl *slot) {
	slices.SortFunc(sl.tasks, func(a, b int) int {
		x, y := in.Tasks[a], in.Tasks[b]
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
}

func terminal(state string) bool { return api.TaskTerminal(state) }
