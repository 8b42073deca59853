package servicespec

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestValidateAutoscale(t *testing.T) {
	base := func(a *api.AutoscaleConfig) api.ServiceSpec {
		return Defaults(api.ServiceSpec{Name: "web", Image: "busybox", Replicas: 2, Autoscale: a})
	}
	tests := []struct {
		name string
		spec api.ServiceSpec
		want string // "" = valid
	}{
		{"cpu target", base(&api.AutoscaleConfig{Min: 2, Max: 10, CPUPercent: 70}), ""},
		{"none", base(nil), ""},
		{"min 0", base(&api.AutoscaleConfig{Min: 0, Max: 10, CPUPercent: 70}), "autoscale.min 0: must be at least 1"},
		{"max below min", base(&api.AutoscaleConfig{Min: 3, Max: 2, CPUPercent: 70}), "autoscale.max 2: must be at least min (3)"},
		{"max too big", base(&api.AutoscaleConfig{Min: 1, Max: MaxReplicas + 1, CPUPercent: 70}), "autoscale.max"},
		{"no target", base(&api.AutoscaleConfig{Min: 1, Max: 2}), "needs a cpu or memory target"},
		{"negative cpu", base(&api.AutoscaleConfig{Min: 1, Max: 2, CPUPercent: -1}), "autoscale.cpu_percent -1"},
		{"memory above 100", func() api.ServiceSpec {
			s := base(&api.AutoscaleConfig{Min: 1, Max: 2, MemoryPercent: 120})
			s.Resources.Limits.MemoryBytes = 64 << 20
			return s
		}(), "autoscale.memory_percent 120"},
		{"memory without a limit", base(&api.AutoscaleConfig{Min: 1, Max: 2, MemoryPercent: 80}), "needs a memory limit"},
		{"memory with a limit", func() api.ServiceSpec {
			s := base(&api.AutoscaleConfig{Min: 1, Max: 2, MemoryPercent: 80})
			s.Resources.Limits.MemoryBytes = 64 << 20
			return s
		}(), ""},
		{"negative delay", base(&api.AutoscaleConfig{Min: 1, Max: 2, CPUPercent: 50, ScaleDownDelay: -time.Second}), "scale_down_delay -1s"},
		{"global", func() api.ServiceSpec {
			s := base(&api.AutoscaleConfig{Min: 1, Max: 2, CPUPercent: 50})
			s.Mode, s.Replicas = api.ModeGlobal, 0
			return s
		}(), "applies to replicated services only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.spec)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
