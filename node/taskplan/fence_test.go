package taskplan

import (
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestFenceActions(t *testing.T) {
	amo := func(t *api.Task) { t.ServiceID = "db" }
	plain := func(t *api.Task) { t.ServiceID = "web" }
	specs := map[string]api.ServiceSpec{
		"db":  {AtMostOnce: true, DisconnectGrace: 10 * time.Second},
		"web": {DisconnectGrace: 10 * time.Second},
	}
	running := task("run", api.TaskRunning, api.TaskRunning, amo)
	fresh := task("fresh", api.TaskRunning, api.TaskAssigned, amo)
	web := task("web", api.TaskRunning, api.TaskRunning, plain)
	// A task whose service is gone from the replica: its own spec copy.
	copyOnly := task("copy", api.TaskRunning, api.TaskRunning, func(t *api.Task) {
		t.ServiceID = "gone"
		t.Spec.AtMostOnce, t.Spec.DisconnectGrace = true, 10*time.Second
	})
	told := task("told", api.TaskShutdown, api.TaskRunning, amo)
	tasks := []*api.Task{running, fresh, web, copyOnly, told}
	containers := []api.Container{
		ctr("c-run", "run", api.ContainerRunning, 0, ""),
		ctr("c-web", "web", api.ContainerRunning, 0, ""),
		ctr("c-copy", "copy", api.ContainerRunning, 0, ""),
		ctr("c-told", "told", api.ContainerRunning, 0, ""),
	}
	acts := []Action{
		{Kind: Start, Task: fresh},
		{Kind: Stop, Task: told, Container: &containers[3]},
		{Kind: Report, Task: running, Status: api.TaskStatus{TaskID: "run", State: api.TaskRunning}},
	}
	base := describeAll(acts)
	for _, tt := range []struct {
		name  string
		quiet time.Duration
		want  []string
	}{
		{"leader or in touch", 0, base},
		{"quiet within the grace", 10*time.Second - time.Millisecond, base},
		{"quiet past the grace", 10 * time.Second, []string{
			"report run running", "stop copy c-copy", "stop run c-run", "stop told c-told"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := describeAll(FenceActions(slices.Clone(acts), self, tasks, containers, specs, tt.quiet))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("actions %q, want %q", got, tt.want)
			}
		})
	}
	// The default grace (60s) applies when the service does not set one.
	def := map[string]api.ServiceSpec{"db": {AtMostOnce: true}}
	if got := FenceActions(nil, self, []*api.Task{running}, containers[:1], def, 59*time.Second); len(got) != 0 {
		t.Fatalf("fenced before the default grace: %q", describeAll(got))
	}
	if got := FenceActions(nil, self, []*api.Task{running}, containers[:1], def, 60*time.Second); len(got) != 1 {
		t.Fatalf("not fenced at the default grace: %q", describeAll(got))
	}
}

func TestQuiet(t *testing.T) {
	now := reconcileNow
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name    string
		contact time.Time
		self    *api.Node
		want    time.Duration
	}{
		{"heard just now", now, nil, 0},
		{"since the last contact", ago(5 * time.Second), nil, 5 * time.Second},
		{"own record ready: the contact counts", ago(5 * time.Second),
			&api.Node{Status: api.NodeReady, StatusChangedAt: ago(time.Minute)}, 5 * time.Second},
		{"marked down before the last contact: counts from the mark", ago(5 * time.Second),
			&api.Node{Status: api.NodeDown, StatusChangedAt: ago(time.Minute)}, time.Minute},
		{"marked down after the last contact: the contact counts", ago(time.Minute),
			&api.Node{Status: api.NodeDown, StatusChangedAt: ago(5 * time.Second)}, time.Minute},
		{"a down record without a time changes nothing", ago(5 * time.Second),
			&api.Node{Status: api.NodeDown}, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := Quiet(now, tt.contact, tt.self); got != tt.want {
			t.Errorf("%s: Quiet = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFenceLeases(t *testing.T) {
	amo := func(t *api.Task) { t.ServiceID = "db" }
	specs := map[string]api.ServiceSpec{
		"db":    {AtMostOnce: true, DisconnectGrace: 30 * time.Second},
		"web":   {DisconnectGrace: 30 * time.Second},
		"quick": {AtMostOnce: true, DisconnectGrace: time.Second},
		"dflt":  {AtMostOnce: true},
	}
	tasks := []*api.Task{
		task("run", api.TaskRunning, api.TaskRunning, amo),
		task("web", api.TaskRunning, api.TaskRunning, func(t *api.Task) { t.ServiceID = "web" }),
		task("told", api.TaskShutdown, api.TaskRunning, amo),
		task("quick", api.TaskRunning, api.TaskRunning, func(t *api.Task) { t.ServiceID = "quick" }),
		task("dflt", api.TaskRunning, api.TaskRunning, func(t *api.Task) { t.ServiceID = "dflt" }),
		task("copy", api.TaskRunning, api.TaskRunning, func(t *api.Task) {
			t.ServiceID = "gone"
			t.Spec.AtMostOnce, t.Spec.DisconnectGrace = true, 20*time.Second
		}),
		task("elsewhere", api.TaskRunning, api.TaskRunning, func(t *api.Task) { t.ServiceID = "db"; t.NodeID = "other" }),
		task("exited", api.TaskRunning, api.TaskRunning, amo),
	}
	containers := []api.Container{
		ctr("c-run", "run", api.ContainerRunning, 0, ""),
		ctr("c-web", "web", api.ContainerRunning, 0, ""),
		ctr("c-told", "told", api.ContainerRunning, 0, ""),
		ctr("c-quick", "quick", api.ContainerRunning, 0, ""),
		ctr("c-dflt", "dflt", api.ContainerRunning, 0, ""),
		ctr("c-copy", "copy", api.ContainerRunning, 0, ""),
		ctr("c-else", "elsewhere", api.ContainerRunning, 0, ""),
		ctr("c-exited", "exited", api.ContainerExited, 0, ""),
		ctr("c-orphan", "unknown", api.ContainerRunning, 0, ""),
	}
	for _, tt := range []struct {
		name  string
		quiet time.Duration
		want  map[string]time.Duration
	}{
		{"in touch: the whole grace", 0, map[string]time.Duration{
			"c-run": 30 * time.Second, "c-quick": LeaseFloor, "c-dflt": 60 * time.Second, "c-copy": 20 * time.Second}},
		{"quiet: what is left of it", 12 * time.Second, map[string]time.Duration{
			"c-run": 18 * time.Second, "c-quick": LeaseFloor, "c-dflt": 48 * time.Second, "c-copy": 8 * time.Second}},
		{"past the grace: the floor", 40 * time.Second, map[string]time.Duration{
			"c-run": LeaseFloor, "c-quick": LeaseFloor, "c-dflt": 20 * time.Second, "c-copy": LeaseFloor}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := FenceLeases(self, tasks, containers, specs, tt.quiet)
			if len(got) != len(tt.want) {
				t.Fatalf("leases %v, want %v", got, tt.want)
			}
			for id, d := range tt.want {
				if got[id] != d {
					t.Fatalf("leases %v, want %v", got, tt.want)
				}
			}
		})
	}
	if got := FenceLeases(self, nil, containers, specs, 0); got != nil {
		t.Fatalf("no tasks: leases %v, want none", got)
	}
}
