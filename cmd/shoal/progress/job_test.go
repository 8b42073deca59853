package progress

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestAssessJob: a job's wait is done once the current run (the service's
// version) has its completions, not when tasks run; an earlier run's
// completions do not count; failing tasks end the wait.
func TestAssessJob(t *testing.T) {
	svc := api.Service{Name: "mig", Version: 9, Spec: api.ServiceSpec{Name: "mig", Mode: api.ModeReplicatedJob, Replicas: 2, MaxConcurrent: 1}}
	noRetry := svc
	noRetry.Spec.RestartPolicy.Condition = api.RestartNone
	gsvc := api.Service{Name: "sweep", Version: 9, Spec: api.ServiceSpec{Name: "sweep", Mode: api.ModeGlobalJob}}
	tk := func(id string, v uint64, node, state string, exit int) api.Task {
		return api.Task{ID: id, Name: "mig." + id, SpecVersion: v, NodeID: node, State: state, ExitCode: exit, DesiredState: api.TaskRunning}
	}
	finished := func(t api.Task) api.Task { t.DesiredState = api.TaskComplete; return t }
	givenUp := func(t api.Task) api.Task { t.DesiredState = api.TaskShutdown; return t }
	for _, tc := range []struct {
		name      string
		svc       api.Service
		tasks     []api.Task
		done      bool
		completed int
		err       bool
	}{
		{"running", svc, []api.Task{tk("1", 9, "n1", api.TaskRunning, 0)}, false, 0, false},
		{"one of two", svc, []api.Task{tk("1", 9, "n1", api.TaskComplete, 0), tk("2", 9, "n1", api.TaskRunning, 0)}, false, 1, false},
		{"done", svc, []api.Task{tk("1", 9, "n1", api.TaskComplete, 0), tk("2", 9, "n1", api.TaskComplete, 0)}, true, 2, false},
		{"an earlier run does not count", svc, []api.Task{tk("1", 8, "n1", api.TaskComplete, 0), tk("2", 8, "n1", api.TaskComplete, 0)}, false, 0, false},
		{"keeps failing", svc, []api.Task{tk("1", 9, "n1", api.TaskFailed, 1), tk("2", 9, "n1", api.TaskFailed, 1),
			tk("3", 9, "n1", api.TaskFailed, 1), tk("4", 9, "n1", api.TaskFailed, 1), tk("5", 9, "n1", api.TaskFailed, 1), tk("6", 9, "n1", api.TaskComplete, 2)}, false, 0, true},
		// --restart-condition none: one failure and the run cannot complete.
		{"restart none: a failure ends it", noRetry, []api.Task{tk("1", 9, "n1", api.TaskFailed, 1), tk("2", 9, "n1", api.TaskRunning, 0)}, false, 0, true},
		{"restart none: no failure yet", noRetry, []api.Task{tk("1", 9, "n1", api.TaskComplete, 0), tk("2", 9, "n1", api.TaskRunning, 0)}, false, 1, false},
		{"one failure is retried", svc, []api.Task{tk("1", 9, "n1", api.TaskFailed, 1), tk("2", 9, "n1", api.TaskRunning, 0)}, false, 0, false},
		// A failed task not retried (max attempts reached) is stored
		// desired shutdown: its node still counts, so the job is not done.
		{"global: a node given up is not done", gsvc, []api.Task{finished(tk("a", 9, "n1", api.TaskComplete, 0)), givenUp(tk("b", 9, "n2", api.TaskFailed, 1))}, false, 1, false},
		{"global: nothing yet", gsvc, nil, false, 0, false},
		{"global: one node left", gsvc, []api.Task{tk("a", 9, "n1", api.TaskComplete, 0), tk("b", 9, "n2", api.TaskRunning, 0)}, false, 1, false},
		{"global: done", gsvc, []api.Task{tk("a", 9, "n1", api.TaskComplete, 0), tk("b", 9, "n2", api.TaskComplete, 0)}, true, 2, false},
		// The planner stores a finished task desired complete: its node
		// still counts, so one finished of two is not done.
		{"global: finished desired complete, one left", gsvc, []api.Task{finished(tk("a", 9, "n1", api.TaskComplete, 0)), tk("b", 9, "n2", api.TaskRunning, 0)}, false, 1, false},
		{"global: all finished desired complete", gsvc, []api.Task{finished(tk("a", 9, "n1", api.TaskComplete, 0)), finished(tk("b", 9, "n2", api.TaskComplete, 0))}, true, 2, false},
	} {
		c := Assess(OpCreate, tc.svc, tc.tasks, nil, nil)
		if c.Done != tc.done || c.Completed != tc.completed || (c.Err != nil) != tc.err || !c.Job {
			t.Errorf("%s: done %v completed %d err %v, want %v %d %v", tc.name, c.Done, c.Completed, c.Err, tc.done, tc.completed, tc.err)
		}
	}
}
