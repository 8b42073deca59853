package leaderloop

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestAutoscaled(t *testing.T) {
	svc := func(mode string, as *api.AutoscaleConfig) *api.Service {
		return &api.Service{Spec: api.ServiceSpec{Mode: mode, Autoscale: as}}
	}
	as := &api.AutoscaleConfig{}
	for _, c := range []struct {
		name string
		svcs []*api.Service
		want bool
	}{
		{"no services", nil, false},
		{"none autoscaled", []*api.Service{svc(api.ModeReplicated, nil), svc(api.ModeGlobal, nil)}, false},
		{"global with a config is not sampled", []*api.Service{svc(api.ModeGlobal, as)}, false},
		{"one replicated autoscaled", []*api.Service{svc(api.ModeReplicated, nil), svc(api.ModeReplicated, as)}, true},
	} {
		if got := Autoscaled(c.svcs); got != c.want {
			t.Errorf("%s: Autoscaled = %v, want %v", c.name, got, c.want)
		}
	}
}
