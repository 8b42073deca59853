package api

import (
	"testing"
	"time"
)

func TestJobRunNodes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tk := func(id, node, st string, exit int, desired string, age int) Task {
		return Task{ID: id, NodeID: node, SpecVersion: 3, State: st, ExitCode: exit, DesiredState: desired,
			CreatedAt: t0.Add(time.Duration(age) * time.Second)}
	}
	for _, tc := range []struct {
		name  string
		tasks []Task
		want  int
	}{
		{"running and done", []Task{tk("a", "n1", TaskRunning, 0, TaskRunning, 0), tk("b", "n2", TaskComplete, 0, TaskComplete, 0)}, 2},
		{"failed, kept desired running (older leader)", []Task{tk("a", "n1", TaskFailed, 1, TaskRunning, 0)}, 1},
		{"failed, given up (desired shutdown)", []Task{tk("a", "n1", TaskFailed, 1, TaskShutdown, 0), tk("b", "n2", TaskComplete, 0, TaskComplete, 0)}, 2},
		{"failed, retired, retry runs: one node", []Task{tk("a", "n1", TaskFailed, 1, TaskShutdown, 0), tk("b", "n1", TaskRunning, 0, TaskRunning, 1)}, 1},
		{"drained after a retry: out", []Task{tk("a", "n1", TaskFailed, 1, TaskShutdown, 0), tk("b", "n1", TaskShutdown, 0, TaskShutdown, 1)}, 0},
		{"lost node: out", []Task{tk("a", "n1", TaskOrphaned, 0, TaskShutdown, 0)}, 0},
		{"another run: out", []Task{{ID: "x", NodeID: "n1", SpecVersion: 2, State: TaskRunning, DesiredState: TaskRunning}}, 0},
	} {
		j := NewJobRunNodes(3)
		for i := range tc.tasks {
			j.Add(&tc.tasks[i])
		}
		if got := j.Count(); got != tc.want {
			t.Errorf("%s: %d nodes, want %d", tc.name, got, tc.want)
		}
	}
}
