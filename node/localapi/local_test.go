package localapi

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestDisplayContainerHealth(t *testing.T) {
	for _, tc := range []struct{ state, health, want string }{
		{api.ContainerRunning, api.HealthHealthy, api.HealthHealthy},
		{api.ContainerRunning, "starting", "starting"},
		{api.ContainerExited, api.HealthHealthy, ""},
		{api.ContainerExited, "starting", ""},
		{api.ContainerCreated, api.HealthUnhealthy, ""},
	} {
		got := displayContainer(api.Container{State: tc.state, Health: tc.health}).Health
		if got != tc.want {
			t.Errorf("%s container with health %q shows %q, want %q", tc.state, tc.health, got, tc.want)
		}
	}
}
