package taskplan

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

const self = "node-self"

var reconcileNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// task builds a task assigned to self.
func task(id, desired, state string, mods ...func(*api.Task)) *api.Task {
	t := &api.Task{ID: id, Name: "web." + id, NodeID: self, DesiredState: desired, State: state}
	for _, m := range mods {
		m(t)
	}
	return t
}

func withContainer(id string) func(*api.Task) { return func(t *api.Task) { t.ContainerID = id } }
func withHealth(h string) func(*api.Task)     { return func(t *api.Task) { t.Health = h } }
func onNode(n string) func(*api.Task)         { return func(t *api.Task) { t.NodeID = n } }

func ctr(id, taskID, state string, exit int, health string) api.Container {
	return api.Container{ID: id, TaskID: taskID, State: state, ExitCode: exit, Health: health, CreatedAt: reconcileNow.Add(-time.Minute)}
}

// describe renders an action in a form a table can spell out.
func describe(a Action) string {
	switch a.Kind {
	case Start:
		return "start " + a.Task.ID
	case Stop:
		return fmt.Sprintf("stop %s %s", a.Task.ID, a.Container.ID)
	case Remove:
		return "remove " + a.Container.ID
	case Report:
		s := a.Status
		out := fmt.Sprintf("report %s %s", s.TaskID, s.State)
		if s.ContainerID != "" {
			out += " c=" + s.ContainerID
		}
		if s.Health != "" {
			out += " h=" + s.Health
		}
		if s.ExitCode != 0 {
			out += fmt.Sprintf(" exit=%d", s.ExitCode)
		}
		if s.Error != "" {
			out += fmt.Sprintf(" err=%q", s.Error)
		}
		return out
	}
	return fmt.Sprintf("unknown action %d", a.Kind)
}

func describeAll(acts []Action) []string {
	out := make([]string, 0, len(acts))
	for _, a := range acts {
		out = append(out, describe(a))
	}
	sort.Strings(out)
	return out
}

func TestComputeActions(t *testing.T) {
	tests := []struct {
		name       string
		tasks      []*api.Task
		containers []api.Container
		synced     bool
		want       []string
	}{
		{
			name:  "desired running without container starts it",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskAssigned)},
			want:  []string{"start t1"},
		},
		{
			name:  "new task without container starts it",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskNew)},
			want:  []string{"start t1"},
		},
		{
			name:  "preparing task without container ID is (re)started, not failed",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskPreparing)},
			want:  []string{"start t1"},
		},
		{
			name:  "starting task without container ID is (re)started, not failed",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskStarting)},
			want:  []string{"start t1"},
		},
		{
			name:       "running container is reported running",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskStarting)},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, "")},
			want:       []string{"report t1 running c=c1"},
		},
		{
			name:       "running container already reported: nothing to do",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, "")},
			want:       nil,
		},
		{
			name:       "health change of a running task is reported",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"), withHealth(api.HealthStarting))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, api.HealthHealthy)},
			want:       []string{"report t1 running c=c1 h=healthy"},
		},
		{
			name:       "same state and health already reported: nothing to do",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"), withHealth(api.HealthHealthy))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, api.HealthHealthy)},
			want:       nil,
		},
		{
			name:       "a different container for a running task is reported",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c0"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, "")},
			want:       []string{"report t1 running c=c1"},
		},
		{
			name:       "exit 0 completes the task",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerExited, 0, "")},
			want:       []string{"report t1 complete c=c1"},
		},
		{
			name:       "non-zero exit fails the task with the exit code",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerExited, 3, "")},
			want:       []string{`report t1 failed c=c1 exit=3 err="task: non-zero exit (3)"`},
		},
		{
			name:       "unhealthy container is stopped and the task failed",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"), withHealth(api.HealthHealthy))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, api.HealthUnhealthy)},
			want:       []string{"stop t1 c1", `report t1 failed c=c1 h=unhealthy err="task: container unhealthy"`},
		},
		{
			name:       "desired shutdown with a running container stops it",
			tasks:      []*api.Task{task("t1", api.TaskShutdown, api.TaskRunning, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, "")},
			want:       []string{"stop t1 c1"},
		},
		{
			name:       "desired shutdown of a terminal task with a running container still stops it",
			tasks:      []*api.Task{task("t1", api.TaskShutdown, api.TaskFailed, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, api.HealthUnhealthy)},
			want:       []string{"stop t1 c1"},
		},
		{
			name:       "desired shutdown with an exited container reports shutdown with the exit code",
			tasks:      []*api.Task{task("t1", api.TaskShutdown, api.TaskRunning, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerExited, 137, "")},
			want:       []string{"report t1 shutdown c=c1 exit=137"},
		},
		{
			name:  "desired shutdown without container, not terminal: report shutdown",
			tasks: []*api.Task{task("t1", api.TaskShutdown, api.TaskAssigned)},
			want:  []string{"report t1 shutdown"},
		},
		{
			name:  "desired shutdown without container, already terminal: nothing",
			tasks: []*api.Task{task("t1", api.TaskShutdown, api.TaskComplete, withContainer("c1"))},
			want:  nil,
		},
		{
			name:       "terminal task desired running is left alone (the scheduler replaces it)",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskFailed, withContainer("c1"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerExited, 1, "")},
			want:       nil,
		},
		{
			name:       "container of an unknown task is removed once synced",
			containers: []api.Container{ctr("c9", "gone", api.ContainerRunning, 0, "")},
			synced:     true,
			want:       []string{"remove c9"},
		},
		{
			name:       "container of an unknown task is kept while not synced",
			containers: []api.Container{ctr("c9", "gone", api.ContainerRunning, 0, "")},
			synced:     false,
			want:       nil,
		},
		{
			name:       "containers of `shoal run` (no task) are never touched",
			containers: []api.Container{ctr("c5", "", api.ContainerRunning, 0, ""), ctr("c6", "", api.ContainerExited, 0, "")},
			synced:     true,
			want:       nil,
		},
		{
			name:   "tasks of other nodes are ignored",
			tasks:  []*api.Task{task("t1", api.TaskRunning, api.TaskAssigned, onNode("other")), task("t2", api.TaskShutdown, api.TaskRunning, onNode("other"))},
			synced: true,
			want:   nil,
		},
		{
			name:       "a container here for a task now assigned elsewhere is removed once synced",
			tasks:      []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, onNode("other"))},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, "")},
			synced:     true,
			want:       []string{"remove c1"},
		},
		{
			name:  "a started task whose container disappeared failed",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskRunning, withContainer("c1"))},
			want:  []string{`report t1 failed c=c1 exit=-1 err="container disappeared"`},
		},
		{
			name:  "a starting task with a container ID whose container disappeared failed",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskStarting, withContainer("c1"))},
			want:  []string{`report t1 failed c=c1 exit=-1 err="container disappeared"`},
		},
		{
			name:  "the newest container of a task wins",
			tasks: []*api.Task{task("t1", api.TaskRunning, api.TaskStarting)},
			containers: []api.Container{
				{ID: "old", TaskID: "t1", State: api.ContainerExited, ExitCode: 1, CreatedAt: reconcileNow.Add(-time.Hour)},
				{ID: "new", TaskID: "t1", State: api.ContainerRunning, CreatedAt: reconcileNow.Add(-time.Minute)},
			},
			want: []string{"report t1 running c=new"},
		},
		{
			name: "several tasks at once",
			tasks: []*api.Task{
				task("a", api.TaskRunning, api.TaskAssigned),
				task("b", api.TaskRunning, api.TaskRunning, withContainer("cb")),
				task("c", api.TaskShutdown, api.TaskRunning, withContainer("cc")),
			},
			containers: []api.Container{
				ctr("cb", "b", api.ContainerRunning, 0, ""),
				ctr("cc", "c", api.ContainerRunning, 0, ""),
				ctr("cx", "x", api.ContainerExited, 0, ""),
			},
			synced: true,
			want:   []string{"remove cx", "start a", "stop c cc"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acts := ComputeActions(self, tt.tasks, tt.containers, tt.synced, reconcileNow)
			got := describeAll(acts)
			want := slices.Clone(tt.want)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("actions:\n got  %q\n want %q", got, want)
			}
			for _, a := range acts {
				if a.Kind == Report && !a.Status.Timestamp.Equal(reconcileNow) {
					t.Errorf("report timestamp = %v, want %v", a.Status.Timestamp, reconcileNow)
				}
				if a.Kind == Report && a.Status.TaskID != a.Task.ID {
					t.Errorf("report task ID = %q, want %q", a.Status.TaskID, a.Task.ID)
				}
			}
		})
	}
}

// TestComputeActionsInvariants runs every combination of desired state,
// task state, container state and health and checks what must always hold:
// a report never moves a task's state backwards, never repeats what the
// task already says, a stop always names a running container, and nothing
// is removed before the replica is synced.
func TestComputeActionsInvariants(t *testing.T) {
	states := []string{api.TaskNew, api.TaskAssigned, api.TaskPreparing, api.TaskStarting, api.TaskRunning,
		api.TaskComplete, api.TaskFailed, api.TaskShutdown, api.TaskRejected, api.TaskOrphaned}
	cstates := []string{"", api.ContainerCreated, api.ContainerRunning, api.ContainerExited}
	healths := []string{"", api.HealthStarting, api.HealthHealthy, api.HealthUnhealthy}
	for _, desired := range []string{api.TaskRunning, api.TaskShutdown} {
		for _, st := range states {
			for _, cid := range []string{"", "c1"} {
				for _, cs := range cstates {
					for _, h := range healths {
						for _, synced := range []bool{false, true} {
							tk := task("t1", desired, st, withContainer(cid), withHealth(h))
							var cs1 []api.Container
							if cs != "" {
								cs1 = []api.Container{ctr("c1", "t1", cs, 0, h)}
							}
							name := fmt.Sprintf("desired=%s state=%s cid=%q container=%q health=%q synced=%v", desired, st, cid, cs, h, synced)
							for _, a := range ComputeActions(self, []*api.Task{tk}, cs1, synced, reconcileNow) {
								switch a.Kind {
								case Report:
									if api.TaskStateOrder[a.Status.State] < api.TaskStateOrder[tk.State] {
										t.Errorf("%s: reports %s, backwards from %s", name, a.Status.State, tk.State)
									}
									if a.Status.State == tk.State && a.Status.Health == tk.Health && a.Status.ContainerID == tk.ContainerID {
										t.Errorf("%s: repeats the task's own state %s", name, a.Status.State)
									}
								case Stop:
									if a.Container == nil || a.Container.State != api.ContainerRunning {
										t.Errorf("%s: stop of a container that is not running: %+v", name, a.Container)
									}
								case Remove:
									// Only a container created but never started is
									// removed (and recreated) for a known task.
									if cs != api.ContainerCreated {
										t.Errorf("%s: removes the container of a known task", name)
									}
								case Start:
									if cs != "" {
										t.Errorf("%s: starts a second container", name)
									}
									if desired != api.TaskRunning || api.TaskTerminal(st) {
										t.Errorf("%s: starts a task that must not run", name)
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestComputeActionsConverges feeds each report back into the task, as the
// leader's commit and the reconciler's pending overlay do, and checks that
// the loop reaches a fixed point instead of reporting for ever.
func TestComputeActionsConverges(t *testing.T) {
	tasks := []*api.Task{
		task("t1", api.TaskRunning, api.TaskAssigned),
		task("t2", api.TaskShutdown, api.TaskAssigned),
		task("t3", api.TaskRunning, api.TaskStarting),
	}
	containers := []api.Container{
		ctr("c1", "t1", api.ContainerRunning, 0, api.HealthHealthy),
		ctr("c3", "t3", api.ContainerExited, 2, ""),
	}
	for round := 0; round < 5; round++ {
		acts := ComputeActions(self, tasks, containers, true, reconcileNow)
		if len(acts) == 0 {
			want := map[string]string{"t1": api.TaskRunning, "t2": api.TaskShutdown, "t3": api.TaskFailed}
			for _, tk := range tasks {
				if tk.State != want[tk.ID] {
					t.Errorf("task %s ended %s, want %s", tk.ID, tk.State, want[tk.ID])
				}
			}
			return
		}
		for _, a := range acts {
			if a.Kind != Report {
				t.Fatalf("round %d: unexpected %s", round, describe(a))
			}
			a.Task.State, a.Task.Health, a.Task.ContainerID = a.Status.State, a.Status.Health, a.Status.ContainerID
		}
	}
	t.Fatal("computeActions did not converge in 5 rounds")
}

// TestComputeActionsCreatedContainer: a task whose container exists but was
// never started (the agent died between the runtime's Create and Start; the
// runtime re-adopts it as "created") gets that container removed, so the
// next pass starts a fresh one instead of leaving the task starting for ever.
func TestComputeActionsCreatedContainer(t *testing.T) {
	tk := task("t1", api.TaskRunning, api.TaskStarting)
	acts := ComputeActions(self, []*api.Task{tk}, []api.Container{ctr("c1", "t1", api.ContainerCreated, 0, "")}, true, reconcileNow)
	if len(acts) != 1 || acts[0].Kind != Remove || acts[0].Container == nil || acts[0].Container.ID != "c1" {
		t.Fatalf("want one removal of c1, got %v", acts)
	}
}
