package compose

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestComposePlacement: deploy.placement.max_replicas_per_node and
// .preferences map onto the spec (they were reported as ignored, and the
// stack deployed with its tasks placed as if they were not there); a bad
// value is an error naming the key.
func TestComposePlacement(t *testing.T) {
	placement := func(s api.ServiceSpec) any { return []any{s.MaxReplicasPerNode, s.PlacementPreferences} }
	runKeyCases(t, []keyCase{
		{
			name: "limit and preferences",
			yaml: "services:\n  web:\n    image: x\n    deploy:\n      replicas: 4\n      placement:\n        max_replicas_per_node: 1\n" +
				"        preferences:\n          - spread: node.labels.zone\n          - spread: Node.Labels.rack\n",
			got: placement,
			want: []any{uint64(1), []api.PlacementPreference{
				{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"},
			}},
			ignored: []string{},
		},
		{
			name:    "none",
			yaml:    "services:\n  web:\n    image: x\n    deploy:\n      placement:\n        constraints: [node.role==worker]\n",
			got:     placement,
			want:    []any{uint64(0), []api.PlacementPreference(nil)},
			ignored: []string{},
		},
		{
			name: "spread over something else",
			yaml: "services:\n  web:\n    image: x\n    deploy:\n      placement:\n        preferences:\n          - spread: node.hostname\n",
			err:  []string{"compose.yml:7: services.web.deploy.placement.preferences[0].spread: spread=node.hostname: want spread=node.labels.NAME"},
		},
		{
			name: "limit on a global service",
			yaml: "services:\n  web:\n    image: x\n    deploy:\n      mode: global\n      placement:\n        max_replicas_per_node: 2\n",
			err:  []string{"services.web.deploy.placement.max_replicas_per_node: cannot be used with mode global"},
		},
	})
}
