package runattach

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestDesired: a node's record holds its running `shoal run` containers
// on each network other than the default, by network ID, names sorted;
// task containers, stopped ones, the default network and networks the
// state does not hold are left out.
func TestDesired(t *testing.T) {
	nets := []*api.Network{{ID: "default", Name: api.DefaultNetwork}, {ID: "nb", Name: "back-net"}, {ID: "nf", Name: "front"}}
	ips := map[string]map[string]string{
		"c1": {"back-net": "10.60.0.2", api.DefaultNetwork: "10.42.0.2"},
		"c2": {"back-net": "10.60.0.3", "front": "10.61.0.2"},
		"c3": {"back-net": "10.60.0.4"},
		"c4": {"back-net": "10.60.0.5"},
		"c5": {"gone": "10.70.0.2"},
		"c6": {api.DefaultNetwork: "10.42.0.3"},
	}
	for _, tt := range []struct {
		name string
		cs   []api.Container
		want map[string][]string
	}{
		{"none", nil, map[string][]string{}},
		{"run containers", []api.Container{
			{ID: "c2", Name: "zeta", State: api.ContainerRunning},
			{ID: "c1", Name: "onback", State: api.ContainerRunning},
		}, map[string][]string{"nb": {"onback", "zeta"}, "nf": {"zeta"}}},
		{"a task's container, a stopped one, an unknown network, the default only", []api.Container{
			{ID: "c3", Name: "web.1.t1", State: api.ContainerRunning, TaskID: "t1"},
			{ID: "c4", Name: "done", State: api.ContainerExited},
			{ID: "c5", Name: "orphan", State: api.ContainerRunning},
			{ID: "c6", Name: "plain", State: api.ContainerRunning},
		}, map[string][]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Desired(tt.cs, func(id string) map[string]string { return ips[id] }, nets)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Desired = %v, want %v", got, tt.want)
			}
		})
	}
}
