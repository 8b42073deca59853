package servicespec

import (
	"reflect"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestFieldSinceCoversSpec: every field of api.ServiceSpec has a protocol
// level, so adding a field forces a decision on whether an older agent may
// run tasks that use it; and the table names no field that is gone.
func TestFieldSinceCoversSpec(t *testing.T) {
	typ := reflect.TypeOf(api.ServiceSpec{})
	have := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		name := typ.Field(i).Name
		have[name] = true
		lvl, ok := fieldSince[name]
		if !ok {
			t.Errorf("api.ServiceSpec.%s has no protocol level in fieldSince: decide whether an agent that predates it may run tasks that use it (servicespec/levels.go)", name)
			continue
		}
		if lvl < baseLevel {
			t.Errorf("fieldSince[%s] = %d, below the base level %d", name, lvl, baseLevel)
		}
	}
	for name := range fieldSince {
		if !have[name] {
			t.Errorf("fieldSince names %s, which api.ServiceSpec no longer has", name)
		}
	}
}

func TestMinLevel(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*api.ServiceSpec)
		level  int
		fields []string
	}{
		{"plain", func(*api.ServiceSpec) {}, 1, nil},
		{"base fields only", func(s *api.ServiceSpec) {
			s.Env = []string{"A=1"}
			s.Mounts = []api.Mount{{Type: "tmpfs", Target: "/tmp"}}
			s.AtMostOnce = true
			s.Autoscale = &api.AutoscaleConfig{Min: 1, Max: 2, CPUPercent: 50}
		}, 1, nil},
		{"read_only", func(s *api.ServiceSpec) { s.ReadOnly = true }, 3, []string{"read_only"}},
		{"cap_add", func(s *api.ServiceSpec) { s.CapAdd = []string{"CAP_NET_ADMIN"} }, 3, []string{"cap_add"}},
		{"cap_drop", func(s *api.ServiceSpec) { s.CapDrop = []string{"ALL"} }, 3, []string{"cap_drop"}},
		{"sysctls", func(s *api.ServiceSpec) { s.Sysctls = map[string]string{"net.core.somaxconn": "1024"} }, 3, []string{"sysctls"}},
		{"ulimits", func(s *api.ServiceSpec) { s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}} }, 3, []string{"ulimits"}},
		{"stop_signal", func(s *api.ServiceSpec) { s.StopSignal = "SIGQUIT" }, 3, []string{"stop_signal"}},
		{"hostname", func(s *api.ServiceSpec) { s.Hostname = "db" }, 3, []string{"hostname"}},
		{"extra_hosts", func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.5"} }, 3, []string{"extra_hosts"}},
		{"several, sorted", func(s *api.ServiceSpec) {
			s.ReadOnly = true
			s.CapDrop = []string{"ALL"}
			s.Env = []string{"A=1"}
		}, 3, []string{"cap_drop", "read_only"}},
		// An empty (non-nil) map or list decodes the same on every release.
		{"empty non-nil list and map", func(s *api.ServiceSpec) {
			s.CapDrop = []string{}
			s.Sysctls = map[string]string{}
		}, 1, nil},
		// Jobs: a value of mode, not a new field, needs JobLevel.
		{"replicated-job", func(s *api.ServiceSpec) { s.Mode = api.ModeReplicatedJob }, JobLevel, []string{"mode"}},
		{"global-job", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobalJob }, JobLevel, []string{"mode"}},
		{"job with max_concurrent", func(s *api.ServiceSpec) { s.Mode = api.ModeReplicatedJob; s.MaxConcurrent = 2 },
			JobLevel, []string{"max_concurrent", "mode"}},
		{"job above level 3 fields", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobalJob; s.ReadOnly = true }, JobLevel, []string{"mode"}},
		{"global stays base", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobal }, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := api.ServiceSpec{Name: "web", Image: "nginx"}
			tt.mutate(&s)
			lvl, fields := MinLevel(&s)
			if lvl != tt.level || !slices.Equal(fields, tt.fields) {
				t.Errorf("MinLevel = %d %v, want %d %v", lvl, fields, tt.level, tt.fields)
			}
		})
	}
}
