package reconciler

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestKeepAddresses(t *testing.T) {
	withIPs := api.TaskStatus{TaskID: "t1", State: api.TaskRunning, ContainerID: "c1", IP: "10.42.0.2", IPs: map[string]string{"netb": "10.60.0.2"}}
	bare := api.TaskStatus{TaskID: "t1", State: api.TaskRunning, ContainerID: "c1"}
	for _, tc := range []struct {
		name       string
		prev, next api.TaskStatus
		wantIPs    bool
	}{
		{"a bare report after the start's keeps its addresses", withIPs, bare, true},
		{"nothing queued before", api.TaskStatus{}, bare, false},
		{"another state", withIPs, api.TaskStatus{TaskID: "t1", State: api.TaskFailed, ContainerID: "c1"}, false},
		{"another container", withIPs, api.TaskStatus{TaskID: "t1", State: api.TaskRunning, ContainerID: "c2"}, false},
		{"the newer report has its own", bare, withIPs, true},
	} {
		got := keepAddresses(tc.prev, tc.next)
		if has := got.IPs["netb"] != "" && got.IP != ""; has != tc.wantIPs {
			t.Errorf("%s: addresses %q %v, want kept=%v", tc.name, got.IP, got.IPs, tc.wantIPs)
		}
	}
}
