package api

import "testing"

func TestTaskHostname(t *testing.T) {
	for _, tt := range []struct {
		task Task
		want string
	}{
		{Task{Name: "web.3"}, "web.3"},
		{Task{Name: "web.3", Spec: ServiceSpec{Hostname: "app-host"}}, "app-host"},
	} {
		if got := TaskHostname(&tt.task); got != tt.want {
			t.Errorf("TaskHostname(%+v) = %q, want %q", tt.task, got, tt.want)
		}
	}
}
