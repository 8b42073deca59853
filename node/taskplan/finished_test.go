package taskplan

import (
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestGCFinished(t *testing.T) {
	// slotTask is a task of service svc, slot 1, created age before now.
	slotTask := func(id, svc, state string, age time.Duration) *api.Task {
		return task(id, api.TaskShutdown, state, func(t *api.Task) {
			t.ServiceID, t.Slot, t.CreatedAt = svc, 1, reconcileNow.Add(-age)
		})
	}
	exited := func(id, taskID string) api.Container { return ctr(id, taskID, api.ContainerExited, 0, "") }
	tests := []struct {
		name       string
		tasks      []*api.Task
		containers []api.Container
		want       []string
	}{
		{
			name: "the two newest of a slot keep their containers",
			tasks: []*api.Task{
				slotTask("t1", "web", api.TaskFailed, 4*time.Minute),
				slotTask("t2", "web", api.TaskFailed, 3*time.Minute),
				slotTask("t3", "web", api.TaskFailed, 2*time.Minute),
				slotTask("t4", "web", api.TaskComplete, time.Minute),
			},
			containers: []api.Container{exited("c1", "t1"), exited("c2", "t2"), exited("c3", "t3"), exited("c4", "t4")},
			want:       []string{"c1", "c2"},
		},
		{
			name: "an old task still meant to run keeps its container",
			tasks: []*api.Task{
				slotTask("old", "web", api.TaskStarting, 3*time.Minute),
				slotTask("t2", "web", api.TaskFailed, 2*time.Minute),
				slotTask("t3", "web", api.TaskFailed, time.Minute),
			},
			containers: []api.Container{exited("c-old", "old"), exited("c2", "t2"), exited("c3", "t3")},
		},
		{
			name: "a running container is never removed here",
			tasks: []*api.Task{
				slotTask("t1", "web", api.TaskFailed, 3*time.Minute),
				slotTask("t2", "web", api.TaskFailed, 2*time.Minute),
				slotTask("t3", "web", api.TaskFailed, time.Minute),
			},
			containers: []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, ""), exited("c2", "t2")},
		},
		{
			name: "slots of different services are counted apart",
			tasks: []*api.Task{
				slotTask("w1", "web", api.TaskFailed, 3*time.Minute),
				slotTask("w2", "web", api.TaskFailed, 2*time.Minute),
				slotTask("d1", "db", api.TaskFailed, time.Minute),
			},
			containers: []api.Container{exited("cw1", "w1"), exited("cw2", "w2"), exited("cd1", "d1")},
		},
		{
			name: "containers of unknown tasks and of `shoal run` are not for this pass",
			tasks: []*api.Task{
				slotTask("t1", "web", api.TaskFailed, 3*time.Minute),
				slotTask("t2", "web", api.TaskFailed, 2*time.Minute),
				slotTask("t3", "web", api.TaskFailed, time.Minute),
			},
			containers: []api.Container{exited("cx", "gone"), exited("crun", ""), ctr("cc", "t1", api.ContainerCreated, 0, "")},
			want:       []string{"cc"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GCFinished(tt.tasks, tt.containers)
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("removes %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWithPendingReportsOnce: a report queued but not yet committed counts
// as the task's state, so the next pass does not report it again, and the
// replica's task is left as it was.
func TestWithPendingReportsOnce(t *testing.T) {
	replica := task("t1", api.TaskRunning, api.TaskStarting)
	containers := []api.Container{ctr("c1", "t1", api.ContainerRunning, 0, api.HealthHealthy)}
	tasks := []*api.Task{replica}
	acts := ComputeActions(self, tasks, containers, true, reconcileNow)
	if got := describeAll(acts); !slices.Equal(got, []string{"report t1 running c=c1 h=healthy"}) {
		t.Fatalf("first pass: %q", got)
	}
	pending := map[string]api.TaskStatus{"t1": acts[0].Status}
	WithPending(tasks, pending)
	if got := ComputeActions(self, tasks, containers, true, reconcileNow); len(got) != 0 {
		t.Fatalf("second pass with the report pending: %q, want nothing", describeAll(got))
	}
	if replica.State != api.TaskStarting || replica.ContainerID != "" || replica.Health != "" {
		t.Fatalf("the replica's task was changed: %+v", replica)
	}
	if tasks[0] == replica {
		t.Fatal("the pending report was not overlaid")
	}
}
