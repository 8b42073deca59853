package compose

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestComposeExplicitZero: stop_grace_period: 0s and
// deploy.restart_policy.delay: 0s are zeros, not the defaults (10s, 5s),
// as docker stack deploy reads them: they become api.ExplicitZero, since a
// 0 in a spec means the default. Left out, the defaults stay.
func TestComposeExplicitZero(t *testing.T) {
	got := func(s api.ServiceSpec) any { return []any{s.StopGracePeriod, s.RestartPolicy.Delay} }
	runKeyCases(t, []keyCase{
		{
			name:    "zeros",
			yaml:    "services:\n  web:\n    image: x\n    stop_grace_period: 0s\n    deploy:\n      restart_policy:\n        delay: 0s\n",
			got:     got,
			want:    []any{api.ExplicitZero, api.ExplicitZero},
			ignored: []string{},
		},
		{
			name:    "periods",
			yaml:    "services:\n  web:\n    image: x\n    stop_grace_period: 3s\n    deploy:\n      restart_policy:\n        delay: 2s\n",
			got:     got,
			want:    []any{3 * time.Second, 2 * time.Second},
			ignored: []string{},
		},
		{
			name:    "left out",
			yaml:    "services:\n  web:\n    image: x\n",
			got:     got,
			want:    []any{10 * time.Second, 5 * time.Second},
			ignored: []string{},
		},
	})
}
