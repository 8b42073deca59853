package node

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestServesTraffic: the rule by which the load balancers keep a backend,
// and by which the reconciler drains a stop (taskplan.DrainStops gets it).
func TestServesTraffic(t *testing.T) {
	tests := []struct {
		name   string
		state  string
		ip     string
		health string
		want   bool
	}{
		{"running, no health check", api.TaskRunning, "10.42.1.2", "", true},
		{"running, healthy", api.TaskRunning, "10.42.1.2", api.HealthHealthy, true},
		{"health check not passed yet", api.TaskRunning, "10.42.1.2", api.HealthStarting, false},
		{"unhealthy", api.TaskRunning, "10.42.1.2", api.HealthUnhealthy, false},
		{"no address", api.TaskRunning, "", "", false},
		{"starting", api.TaskStarting, "10.42.1.2", "", false},
		{"stopped", api.TaskShutdown, "10.42.1.2", "", false},
	}
	for _, tt := range tests {
		tk := &api.Task{ID: "t1", DesiredState: api.TaskRunning, State: tt.state, IP: tt.ip, Health: tt.health}
		if got := servesTraffic(tk); got != tt.want {
			t.Errorf("%s: servesTraffic = %v, want %v", tt.name, got, tt.want)
		}
	}
}
