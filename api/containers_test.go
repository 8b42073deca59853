package api

import (
	"testing"
	"time"
)

func TestTaskContainer(t *testing.T) {
	at := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	longID := "abcdef0123456789abcdef01"
	list := []Container{
		// An older, exited container of web.1 and the running one.
		{ID: "old", Name: "web.1.oldtask", TaskID: "oldtask", State: ContainerExited, CreatedAt: at},
		{ID: "run", Name: "web.1.newtask", TaskID: "newtask", State: ContainerRunning, CreatedAt: at.Add(-time.Hour)},
		{ID: "ten", Name: "web.10.t10", TaskID: "t10", State: ContainerRunning, CreatedAt: at},
		// Two exited containers of one slot: the newer wins.
		{ID: "db1", Name: "db.1.a", TaskID: "a", State: ContainerExited, CreatedAt: at},
		{ID: "db2", Name: "db.1.b", TaskID: "b", State: ContainerExited, CreatedAt: at.Add(time.Minute)},
		{ID: "shop", Name: "shop_web.1.abc", TaskID: "abc", State: ContainerExited, CreatedAt: at},
		// A task ID longer than its short form: the container is named
		// with the short one, the full task name has the whole ID.
		{ID: "long", Name: "api.2." + ShortID(longID), TaskID: longID, State: ContainerRunning, CreatedAt: at},
		{ID: "glob", Name: "agent.node1aaaaaaa.xyz", TaskID: "xyz", State: ContainerRunning, CreatedAt: at},
		// Not a task's: its name never stands for a task.
		{ID: "plain", Name: "web.2.x", State: ContainerRunning, CreatedAt: at},
		// A TaskID its name does not end in (not one the reconciler names).
		{ID: "odd", Name: "web.3.zzz", TaskID: "other", State: ContainerRunning, CreatedAt: at},
	}
	for _, tc := range []struct {
		ref, want string // want "": none
	}{
		{"web.1", "run"},
		{"web.10", "ten"},
		{"db.1", "db2"},
		{"shop_web.1", "shop"},
		{"api.2", "long"},
		{"api.2." + longID, "long"},
		{"agent.node1aaaaaaa", "glob"},
		{"web.1.newtask", "run"}, // the full name of a short-ID task
		{"web", ""},
		{"web.", ""},
		{"b.1", ""},
		{"eb.1", ""},
		{"web.2", ""},
		{"web.3", ""},
		{"api.2.abcdef", ""}, // a prefix of the task ID is not its full name
		{"", ""},
	} {
		c, ok := TaskContainer(list, tc.ref)
		if ok != (tc.want != "") || c.ID != tc.want {
			t.Errorf("TaskContainer(%q) = %q, %v; want %q", tc.ref, c.ID, ok, tc.want)
		}
	}
	if _, ok := TaskContainer(nil, "web.1"); ok {
		t.Error("an empty list found a container")
	}
}
