package sightings

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// TestSaw: a sight is kept while the record's date stays, a new date is a
// new sight, a record gone is forgotten (and seen anew if it comes back),
// and only the events the planner waits on are noted.
func TestSaw(t *testing.T) {
	down := func(id string, since int) api.Node {
		return api.Node{ID: id, Status: api.NodeDown, StatusChangedAt: at(since)}
	}
	ended := func(id string, end int) api.Task {
		return api.Task{ID: id, ServiceID: "s", DesiredState: api.TaskRunning, State: api.TaskFailed, UpdatedAt: at(end)}
	}
	updating := []api.Service{{ID: "u", UpdateStatus: &api.UpdateStatus{State: api.UpdateUpdating}}}
	type call struct {
		nodes []api.Node
		svcs  []api.Service
		tasks []api.Task
		now   int
	}
	for _, tc := range []struct {
		name  string
		calls []call
		get   func(Sights) map[string]time.Time
		id    string
		want  int // seconds; -1: absent
	}{
		{"down kept", []call{{nodes: []api.Node{down("n1", 0)}, now: 5}, {nodes: []api.Node{down("n1", 0)}, now: 9}},
			func(x Sights) map[string]time.Time { return x.Down }, "n1", 5},
		{"down again is new", []call{{nodes: []api.Node{down("n1", 0)}, now: 5}, {nodes: []api.Node{down("n1", 7)}, now: 9}},
			func(x Sights) map[string]time.Time { return x.Down }, "n1", 9},
		{"forgotten when gone", []call{{nodes: []api.Node{down("n1", 0)}, now: 5}, {now: 6}, {nodes: []api.Node{down("n1", 0)}, now: 9}},
			func(x Sights) map[string]time.Time { return x.Down }, "n1", 9},
		{"ready node not noted", []call{{nodes: []api.Node{{ID: "n1", Status: api.NodeReady}}, now: 5}},
			func(x Sights) map[string]time.Time { return x.Down }, "n1", -1},
		{"ended kept", []call{{tasks: []api.Task{ended("t1", 1)}, now: 3}, {tasks: []api.Task{ended("t1", 1)}, now: 8}},
			func(x Sights) map[string]time.Time { return x.Ended }, "t1", 3},
		{"ended but meant to stop", []call{{tasks: []api.Task{{ID: "t1", DesiredState: api.TaskShutdown, State: api.TaskFailed}}, now: 3}},
			func(x Sights) map[string]time.Time { return x.Ended }, "t1", -1},
		{"started in an update", []call{{svcs: updating, tasks: []api.Task{{ID: "t1", ServiceID: "u", State: api.TaskRunning, StartedAt: at(1)}}, now: 4}},
			func(x Sights) map[string]time.Time { return x.Started }, "t1", 4},
		{"started, no update", []call{{tasks: []api.Task{{ID: "t1", ServiceID: "u", State: api.TaskRunning, StartedAt: at(1)}}, now: 4}},
			func(x Sights) map[string]time.Time { return x.Started }, "t1", -1},
		{"move started", []call{{tasks: []api.Task{{ID: "m1", Replaces: "t1", State: api.TaskRunning, StartedAt: at(1)}}, now: 2},
			{tasks: []api.Task{{ID: "m1", Replaces: "t1", State: api.TaskRunning, StartedAt: at(1)}}, now: 6}},
			func(x Sights) map[string]time.Time { return x.MoveStart }, "m1", 2},
		{"move failed", []call{{tasks: []api.Task{{ID: "m1", Replaces: "t1", DesiredState: api.TaskRunning, State: api.TaskFailed, UpdatedAt: at(1)}}, now: 2}},
			func(x Sights) map[string]time.Time { return x.MoveFail }, "m1", 2},
		{"orphaned with its removed node", []call{{tasks: []api.Task{{ID: "t1", NodeID: "gone", State: api.TaskOrphaned, UpdatedAt: at(1)}}, now: 2},
			{tasks: []api.Task{{ID: "t1", NodeID: "gone", State: api.TaskOrphaned, UpdatedAt: at(1)}}, now: 7}},
			func(x Sights) map[string]time.Time { return x.Removed }, "t1", 2},
		{"orphaned, its node still there", []call{{nodes: []api.Node{down("n1", 0)}, tasks: []api.Task{{ID: "t1", NodeID: "n1", State: api.TaskOrphaned, UpdatedAt: at(1)}}, now: 2}},
			func(x Sights) map[string]time.Time { return x.Removed }, "t1", -1},
		{"plain task is no move", []call{{tasks: []api.Task{{ID: "t1", State: api.TaskFailed, UpdatedAt: at(1)}}, now: 2}},
			func(x Sights) map[string]time.Time { return x.MoveFail }, "t1", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Memory
			var x Sights
			for _, c := range tc.calls {
				x = m.Saw(c.nodes, c.svcs, c.tasks, at(c.now))
			}
			got, ok := tc.get(x)[tc.id]
			switch {
			case tc.want < 0 && ok:
				t.Fatalf("%s seen at %v, want not noted", tc.id, got)
			case tc.want >= 0 && (!ok || !got.Equal(at(tc.want))):
				t.Fatalf("%s seen at %v (%v), want %v", tc.id, got, ok, at(tc.want))
			}
		})
	}
}
