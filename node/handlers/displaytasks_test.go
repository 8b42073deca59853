package handlers

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestDisplayTasksOrphanedAge: a task kept for a down node shows as
// orphaned, aged from when its node went down, not from its last report
// ("orphaned 9 minutes ago" for a node lost a second ago).
func TestDisplayTasksOrphanedAge(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	lost := t0.Add(9 * time.Minute)
	store := consensus.NewStore()
	machine := fsm.New(store)
	svc := api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "bb:1", Replicas: 3}}
	if res := machine.ApplyCommand(10, command.CreateService{Service: svc}); res.Err != nil {
		t.Fatal(res.Err)
	}
	nodes := []api.Node{
		{ID: "n1", Hostname: "h1", Status: api.NodeReady, StatusChangedAt: t0},
		{ID: "n2", Hostname: "h2", Status: api.NodeDown, StatusChangedAt: lost},
		{ID: "n3", Hostname: "h3", Status: api.NodeDown}, // down, time unknown
	}
	for i, n := range nodes {
		if res := machine.ApplyCommand(uint64(11+i), command.UpsertNode{Node: n}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	tk := func(id, node string, slot int, updated time.Time) *api.Task {
		return &api.Task{ID: id, ServiceID: "s1", Service: "web", Slot: slot, NodeID: node, State: api.TaskRunning,
			DesiredState: api.TaskRunning, CreatedAt: t0, UpdatedAt: updated, StartedAt: t0}
	}
	later := lost.Add(time.Second) // reported after the down mark (another leader's clock)
	tasks := []*api.Task{tk("a", "n1", 1, t0), tk("b", "n2", 2, t0), tk("c", "n3", 3, t0), tk("d", "n2", 4, later)}
	cases := map[string]struct {
		state   string
		updated time.Time
	}{
		"a": {api.TaskRunning, t0},
		"b": {api.TaskOrphaned, lost},
		"c": {api.TaskOrphaned, t0},
		"d": {api.TaskOrphaned, later},
	}
	for _, got := range DisplayTasks(store, tasks, "") {
		want := cases[got.ID]
		if got.State != want.state || !got.UpdatedAt.Equal(want.updated) {
			t.Errorf("task %s: %s updated %v, want %s updated %v", got.ID, got.State, got.UpdatedAt, want.state, want.updated)
		}
	}
	if !tasks[1].UpdatedAt.Equal(t0) {
		t.Errorf("the stored task changed: updated %v", tasks[1].UpdatedAt)
	}
}
