package handlers

import (
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestDisplayServiceJob: `service ls` of a job counts its current run only
// (tasks of the service's version): running, completed (exit 0), and for
// a global job the tasks of the run as its total; a task of an earlier run
// or one that failed is not a completion.
func TestDisplayServiceJob(t *testing.T) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	rj := api.Service{ID: "j1", Name: "mig", Spec: api.ServiceSpec{Name: "mig", Mode: api.ModeReplicatedJob, Replicas: 3, MaxConcurrent: 2, Image: "bb:1"}}
	gj := api.Service{ID: "j2", Name: "sweep", Spec: api.ServiceSpec{Name: "sweep", Mode: api.ModeGlobalJob, Image: "bb:1"}}
	if res := machine.ApplyCommand(10, command.CreateService{Service: rj}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := machine.ApplyCommand(11, command.CreateService{Service: gj}); res.Err != nil {
		t.Fatal(res.Err)
	}
	tk := func(id, svc string, v uint64, state string, exit int) api.Task {
		return api.Task{ID: id, ServiceID: svc, SpecVersion: v, State: state, ExitCode: exit, DesiredState: api.TaskRunning}
	}
	// A finished task is stored desired complete (node/scheduler/jobs)
	// and still counts in a global job's total.
	finished := func(t api.Task) api.Task { t.DesiredState = api.TaskComplete; return t }
	// A failed task that will not be retried is stored desired shutdown
	// (node/scheduler/jobs) and still counts in a global job's total.
	givenUp := func(t api.Task) api.Task { t.DesiredState = api.TaskShutdown; return t }
	// A global job's tasks are each on their node.
	on := func(node string, t api.Task) api.Task { t.NodeID = node; return t }
	tasks := []api.Task{
		tk("a", "j1", 10, api.TaskComplete, 0), tk("b", "j1", 10, api.TaskRunning, 0), tk("c", "j1", 10, api.TaskFailed, 1),
		tk("d", "j1", 9, api.TaskComplete, 0), // an earlier run
		on("n1", finished(tk("e", "j2", 11, api.TaskComplete, 0))), on("n2", tk("f", "j2", 11, api.TaskComplete, 3)), on("n3", tk("g", "j2", 11, api.TaskRunning, 0)),
		on("n4", givenUp(tk("h", "j2", 11, api.TaskFailed, 1))),
	}
	for i, id := range []string{"n1", "n2", "n3", "n4"} {
		if res := machine.ApplyCommand(uint64(12+i), command.UpsertNode{Node: api.Node{ID: id, Status: api.NodeReady}}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if res := machine.ApplyCommand(16, command.UpsertTasks{Tasks: tasks}); res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, tc := range []struct {
		id                          string
		running, completed, replica int
	}{
		{"j1", 1, 1, 3},
		{"j2", 1, 1, 4},
	} {
		s, err := store.Service(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		got := DisplayService(store, s)
		if got.Running != tc.running || got.Completed != tc.completed || int(got.Replicas) != tc.replica {
			t.Errorf("%s: running %d completed %d replicas %d, want %d %d %d", tc.id, got.Running, got.Completed, got.Replicas, tc.running, tc.completed, tc.replica)
		}
	}
}
