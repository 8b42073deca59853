package servicespec

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestMaterialEqualContainerOptions: a change of a container option
// replaces the tasks (they are set when the container is made), as any
// other change of what the tasks run.
func TestMaterialEqualContainerOptions(t *testing.T) {
	base := func() api.ServiceSpec { return api.ServiceSpec{Name: "web", Image: "nginx"} }
	tests := []struct {
		name   string
		mutate func(*api.ServiceSpec)
	}{
		{"read_only", func(s *api.ServiceSpec) { s.ReadOnly = true }},
		{"cap_add", func(s *api.ServiceSpec) { s.CapAdd = []string{"CAP_NET_ADMIN"} }},
		{"cap_drop", func(s *api.ServiceSpec) { s.CapDrop = []string{"CAP_NET_RAW"} }},
		{"ulimits", func(s *api.ServiceSpec) { s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}} }},
		{"stop_signal", func(s *api.ServiceSpec) { s.StopSignal = "SIGQUIT" }},
		{"hostname", func(s *api.ServiceSpec) { s.Hostname = "app-host" }},
		{"extra_hosts", func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.5"} }},
		{"sysctls", func(s *api.ServiceSpec) { s.Sysctls = map[string]string{"net.core.somaxconn": "1024"} }},
		{"log_driver", func(s *api.ServiceSpec) { s.LogDriver = "none" }},
		{"log_options", func(s *api.ServiceSpec) { s.LogOptions = map[string]string{"max-size": "8k"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.mutate(&b)
			if MaterialEqual(&a, &b) {
				t.Error("a change of " + tt.name + " is not material: the tasks would keep running the old spec")
			}
			c := base()
			tt.mutate(&c)
			if !MaterialEqual(&b, &c) {
				t.Error("equal specs differ")
			}
		})
	}
}

// TestMaterialEqualLabels: a service's labels are the service's (no
// container carries them), so changing them rolls no task, as docker's
// `service update --label-add`.
func TestMaterialEqualLabels(t *testing.T) {
	a := api.ServiceSpec{Name: "web", Image: "nginx", Labels: map[string]string{"tier": "front"}}
	b := a
	b.Labels = map[string]string{"tier": "back", "owner": "team-a"}
	if !MaterialEqual(&a, &b) {
		t.Error("a change of labels alone would replace every task")
	}
}

// TestMaterialEqualPlacement: a change of placement preferences rolls the
// tasks (a rolling update re-spreads them, as Swarm rolls any placement
// change); a change of the max replicas per node does not: tasks that
// still fit keep running.
func TestMaterialEqualPlacement(t *testing.T) {
	a := api.ServiceSpec{Name: "web", Image: "nginx", MaxReplicasPerNode: 1}
	b := a
	b.MaxReplicasPerNode = 3
	if !MaterialEqual(&a, &b) {
		t.Error("a change of max replicas per node alone would replace every task")
	}
	b.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
	if MaterialEqual(&a, &b) {
		t.Error("a new placement preference replaces no task")
	}
}

// TestMaterialEqualLogging: what counts is what the logs become: json-file,
// local and the default are the same files, and "10m" is "10240k"; a new
// size or count, or none, rolls the tasks.
func TestMaterialEqualLogging(t *testing.T) {
	tests := []struct {
		name      string
		aDriver   string
		aOpts     map[string]string
		bDriver   string
		bOpts     map[string]string
		wantEqual bool
	}{
		{"default is json-file", "", nil, "json-file", nil, true},
		{"local is json-file", "local", map[string]string{"max-size": "10m"}, "json-file", map[string]string{"max-size": "10240k"}, true},
		{"new size", "", map[string]string{"max-size": "10m"}, "", map[string]string{"max-size": "20m"}, false},
		{"new count", "", map[string]string{"max-file": "3"}, "", map[string]string{"max-file": "2"}, false},
		{"none", "", nil, "none", nil, false},
		{"unparsed compare by text", "syslog", nil, "syslog", nil, true},
		{"unparsed differ", "syslog", nil, "gelf", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := api.ServiceSpec{Name: "web", Image: "nginx", LogDriver: tt.aDriver, LogOptions: tt.aOpts}
			b := api.ServiceSpec{Name: "web", Image: "nginx", LogDriver: tt.bDriver, LogOptions: tt.bOpts}
			if got := MaterialEqual(&a, &b); got != tt.wantEqual {
				t.Errorf("MaterialEqual = %v, want %v", got, tt.wantEqual)
			}
		})
	}
}
