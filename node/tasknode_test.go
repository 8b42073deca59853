package node

import (
	"context"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestTaskNode: the container routes' not-found names the node a task
// runs on for every task name they take: web.1 and the full web.1.TASKID
// (Routes.container, api.TaskContainer). The full form got no hint, so
// `shoal exec web.1.TASKID` on the wrong node said only "no such
// container".
func TestTaskNode(t *testing.T) {
	a := newSoloAgent(t)
	now := time.Now().UTC()
	const taskID = "0123456789abcdef0123456789abcdef"
	for _, cmd := range []command.Command{
		command.UpsertNode{Node: api.Node{ID: "node-b", Hostname: "b", Role: api.RoleWorker, Status: api.NodeReady, Availability: api.AvailabilityActive, CreatedAt: now}},
		command.CreateService{Service: api.Service{ID: "svc1", Name: "shop_web", Spec: api.ServiceSpec{Name: "shop_web", Image: "busybox", Mode: api.ModeReplicated, Replicas: 1}}},
		command.UpsertTasks{Tasks: []api.Task{{ID: taskID, ServiceID: "svc1", Service: "shop_web", Slot: 1, Name: "shop_web.1", NodeID: "node-b",
			DesiredState: api.TaskRunning, State: api.TaskRunning, CreatedAt: now}}},
	} {
		if _, err := a.cl.Raft.Apply(context.Background(), cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	for _, tt := range []struct{ ref, want string }{
		{"shop_web.1", "b"},
		{"shop_web.1." + taskID, "b"},
		{"shop_web.1.ffffffffffffffffffffffffffffffff", ""},
		{"shop_web.2", ""},
		{"shop_web", ""},
	} {
		if got := (localAgent{a}).TaskNode(tt.ref); got != tt.want {
			t.Errorf("TaskNode(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}
