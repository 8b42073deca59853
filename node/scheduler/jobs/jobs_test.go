package jobs

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// task makes a task of run v in slot (or on node) in state st.
func task(id string, v uint64, slot int, node, st string, exit int) *api.Task {
	return &api.Task{ID: id, SpecVersion: v, Slot: slot, NodeID: node, State: st, ExitCode: exit,
		DesiredState: api.TaskRunning, CreatedAt: t0, UpdatedAt: t0}
}

// awayIdx reports the given task indices as kept for a down node.
func awayIdx(idx ...int) func(int) bool {
	return func(i int) bool {
		for _, j := range idx {
			if i == j {
				return true
			}
		}
		return false
	}
}

func retired(t *api.Task) *api.Task { t.DesiredState = api.TaskShutdown; return t }

// finished marks a completed task desired complete, as the planner does.
func finished(t *api.Task) *api.Task { t.DesiredState = api.TaskComplete; return t }

func TestDecide(t *testing.T) {
	const v = 7
	on := api.RestartPolicy{Condition: api.RestartOnFailure}
	for _, tc := range []struct {
		name string
		in   Input
		want Decision
	}{
		{"fresh: MaxConcurrent starts", Input{Total: 3, MaxConcurrent: 2},
			Decision{Start: []Start{{Slot: 1}, {Slot: 2}}}},
		{"MaxConcurrent 0 = Total", Input{Total: 3},
			Decision{Start: []Start{{Slot: 1}, {Slot: 2}, {Slot: 3}}}},
		{"room counts the active", Input{Total: 3, MaxConcurrent: 2, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0)}},
			Decision{Start: []Start{{Slot: 2}}}},
		{"completed slot not started again", Input{Total: 2, MaxConcurrent: 1, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskComplete, 0)}},
			Decision{Finish: []int{0}, Start: []Start{{Slot: 2}}, Completed: 1}},
		{"all done", Input{Total: 2, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskComplete, 0), task("b", v, 2, "n1", api.TaskComplete, 0)}},
			Decision{Finish: []int{0, 1}, Completed: 2}},
		// Once desired complete, a finished task is still done: nothing
		// starts again and nothing is written (the plan is idempotent).
		{"finished tasks stay done", Input{Total: 2, Tasks: []*api.Task{
			finished(task("a", v, 1, "n1", api.TaskComplete, 0)), finished(task("b", v, 2, "n1", api.TaskComplete, 0))}},
			Decision{Completed: 2}},
		{"global: finished tasks stay done", Input{Global: true, Nodes: []string{"n1", "n2"}, Policy: api.RestartPolicy{Condition: api.RestartAny}, Tasks: []*api.Task{
			finished(task("a", v, 0, "n1", api.TaskComplete, 0)), task("b", v, 0, "n2", api.TaskComplete, 0)}},
			Decision{Finish: []int{1}, Completed: 2}},
		{"a finished task of an earlier run is deleted", Input{Total: 1, Tasks: []*api.Task{
			finished(task("a", v-1, 1, "n1", api.TaskComplete, 0))}},
			Decision{Delete: []int{0}, Start: []Start{{Slot: 1}}}},
		{"complete with an exit code is a failure", Input{Total: 1, Policy: on, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskComplete, 2)}},
			Decision{Retire: []int{0}, Start: []Start{{Slot: 1}}}},
		{"failure retried", Input{Total: 1, Policy: on, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskFailed, 1)}},
			Decision{Retire: []int{0}, Start: []Start{{Slot: 1}}}},
		{"retry waits for room", Input{Total: 2, MaxConcurrent: 1, Policy: on, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskFailed, 1), task("b", v, 2, "n1", api.TaskRunning, 0)}},
			Decision{}},
		{"retry after the delay", Input{Total: 1, Policy: api.RestartPolicy{Condition: api.RestartAny, Delay: 5 * time.Second}, Now: t0.Add(time.Second),
			Tasks: []*api.Task{task("a", v, 1, "n1", api.TaskFailed, 1)}},
			Decision{Wake: t0.Add(5 * time.Second)}},
		{"condition none: never retried", Input{Total: 1, Policy: api.RestartPolicy{Condition: api.RestartNone},
			Tasks: []*api.Task{task("a", v, 1, "n1", api.TaskFailed, 1)}},
			Decision{}},
		// Every node at GiveUpLevel: a failed task that will not be
		// retried is stored desired shutdown, as swarmkit does, and stays
		// its slot's end.
		{"condition none, all at GiveUpLevel: the failed task is shut down", Input{Total: 1, GiveUp: true, Policy: api.RestartPolicy{Condition: api.RestartNone},
			Tasks: []*api.Task{task("a", v, 1, "n1", api.TaskFailed, 1)}},
			Decision{GiveUp: []int{0}}},
		{"condition none: given up stays given up", Input{Total: 1, GiveUp: true, Policy: api.RestartPolicy{Condition: api.RestartNone},
			Tasks: []*api.Task{retired(task("a", v, 1, "n1", api.TaskFailed, 1))}},
			Decision{}},
		{"max attempts reached: given up", Input{Total: 1, GiveUp: true, Policy: api.RestartPolicy{Condition: api.RestartOnFailure, MaxAttempts: 1},
			Tasks: []*api.Task{retired(task("a", v, 1, "n1", api.TaskFailed, 1)), task("b", v, 1, "n1", api.TaskRejected, 0)}},
			Decision{GiveUp: []int{1}}},
		{"max attempts reached, given up: nothing more", Input{Total: 1, GiveUp: true, Policy: api.RestartPolicy{Condition: api.RestartOnFailure, MaxAttempts: 1},
			Tasks: []*api.Task{retired(task("a", v, 1, "n1", api.TaskFailed, 1)), retired(task("b", v, 1, "n1", api.TaskComplete, 3))}},
			Decision{}},
		{"a shutdown end is not given up (it would read as asked for)", Input{Total: 1, GiveUp: true, Policy: api.RestartPolicy{Condition: api.RestartNone},
			Tasks: []*api.Task{task("a", v, 1, "n1", api.TaskShutdown, 0)}},
			Decision{}},
		{"retired, its replacement never created: retried", Input{Total: 1, Policy: on,
			Tasks: []*api.Task{retired(task("a", v, 1, "n1", api.TaskFailed, 1))}},
			Decision{Retire: []int{0}, Start: []Start{{Slot: 1}}}},
		{"global: given up on its node, not counted done", Input{Global: true, GiveUp: true, Nodes: []string{"n1", "n2"}, Policy: api.RestartPolicy{Condition: api.RestartNone},
			Tasks: []*api.Task{task("a", v, 0, "n1", api.TaskFailed, 1), task("b", v, 0, "n2", api.TaskComplete, 0)}},
			Decision{Finish: []int{1}, GiveUp: []int{0}, Completed: 1}},
		{"a retired task is history, not a failure", Input{Total: 1, Policy: on, Tasks: []*api.Task{
			retired(task("a", v, 1, "n1", api.TaskFailed, 1)), task("b", v, 1, "n1", api.TaskRunning, 0)}},
			Decision{}},
		{"vacated task: slot started again", Input{Total: 1, Policy: on, Tasks: []*api.Task{
			retired(task("a", v, 1, "n1", api.TaskOrphaned, 0))}},
			Decision{Start: []Start{{Slot: 1}}}},
		{"earlier run stopped and deleted", Input{Total: 1, Tasks: []*api.Task{
			task("a", v-1, 1, "n1", api.TaskRunning, 0), task("b", v-1, 2, "n1", api.TaskComplete, 0),
			retired(task("c", v-1, 1, "n1", api.TaskRunning, 0))}},
			Decision{Stop: []int{0}, Delete: []int{1}, Start: []Start{{Slot: 1}}}},
		{"history beyond Keep deleted, with today's retirement", Input{Total: 1, Keep: 1, Policy: on, Tasks: []*api.Task{
			retired(task("a", v, 1, "n1", api.TaskFailed, 1)), task("b", v, 1, "n1", api.TaskFailed, 1)}},
			Decision{Retire: []int{1}, Delete: []int{0}, Start: []Start{{Slot: 1}}}},
		{"away task: its slot starts again at once", Input{Total: 2, Away: awayIdx(0), Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0), task("b", v, 2, "n2", api.TaskRunning, 0)}},
			Decision{Start: []Start{{Slot: 1}}}},
		{"away task: not counted against MaxConcurrent, its restart is", Input{Total: 3, MaxConcurrent: 1, Away: awayIdx(0), Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0)}},
			Decision{Start: []Start{{Slot: 1}}}},
		{"away task, at most once: the slot waits", Input{Total: 1, AtMostOnce: true, Away: awayIdx(0), Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0)}},
			Decision{}},
		{"away task beside its running replacement: nothing", Input{Total: 1, Away: awayIdx(0), Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0), task("b", v, 1, "n2", api.TaskRunning, 0)}},
			Decision{}},
		{"away task, its replacement failed: retried per the policy", Input{Total: 1, Policy: on, Away: awayIdx(0), Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0), task("b", v, 1, "n2", api.TaskFailed, 1)}},
			Decision{Retire: []int{1}, Start: []Start{{Slot: 1}}}},
		{"slot completed on one task: the other stops, one completion", Input{Total: 1, Tasks: []*api.Task{
			task("a", v, 1, "n1", api.TaskRunning, 0), task("b", v, 1, "n2", api.TaskComplete, 0)}},
			Decision{Surplus: []int{0}, Finish: []int{1}, Completed: 1}},
		{"global: every eligible node", Input{Global: true, Nodes: []string{"n1", "n2", "n3"}, Tasks: []*api.Task{
			task("a", v, 0, "n1", api.TaskComplete, 0), task("b", v, 0, "n2", api.TaskRunning, 0)}},
			Decision{Finish: []int{0}, Start: []Start{{Node: "n3"}}, Completed: 1}},
		{"global: a node gone keeps its completion", Input{Global: true, Nodes: []string{"n2"}, Tasks: []*api.Task{
			task("a", v, 0, "n1", api.TaskComplete, 0)}},
			Decision{Finish: []int{0}, Start: []Start{{Node: "n2"}}, Completed: 1}},
		{"global: failure retried, no limit", Input{Global: true, Nodes: []string{"n1", "n2"}, MaxConcurrent: 1, Policy: on, Tasks: []*api.Task{
			task("a", v, 0, "n1", api.TaskFailed, 1)}},
			Decision{Retire: []int{0}, Start: []Start{{Node: "n1"}, {Node: "n2"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Version = v
			if in.Keep == 0 {
				in.Keep = 5
			}
			if in.Now.IsZero() {
				in.Now = t0.Add(time.Minute)
			}
			got := Decide(in)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide = %+v\nwant     %+v", got, tc.want)
			}
		})
	}
}
