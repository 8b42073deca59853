package reconciler

import (
	"strings"
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

// TestContainerSpecLogging: a service's log driver and options reach the
// container's spec, which the runtime hands the supervisor at its start;
// a spec the agent cannot run is an error (the task is rejected).
func TestContainerSpecLogging(t *testing.T) {
	for _, tc := range []struct {
		name      string
		driver    string
		opts      map[string]string
		wantSize  int64
		wantFiles int
		wantNone  bool
		wantErr   string
	}{
		{"node default", "", nil, 0, 0, false, ""},
		{"json-file options", "json-file", map[string]string{"max-size": "8k", "max-file": "2"}, 8 << 10, 2, false, ""},
		{"local size only", "local", map[string]string{"max-size": "10m"}, 10 << 20, 0, false, ""},
		{"none", "none", nil, 0, 0, true, ""},
		{"unsupported", "syslog", nil, 0, 0, false, `logging: unsupported log driver "syslog"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := &api.Task{ID: "abcdef0123456789", Name: "web.1", Service: "web",
				Spec: api.ServiceSpec{Name: "web", Image: "busybox", LogDriver: tc.driver, LogOptions: tc.opts}}
			spec, err := containerSpec(task, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.LogMaxSize != tc.wantSize || spec.LogMaxFiles != tc.wantFiles || spec.LogNone != tc.wantNone {
				t.Errorf("log size %d files %d none %v, want %d %d %v",
					spec.LogMaxSize, spec.LogMaxFiles, spec.LogNone, tc.wantSize, tc.wantFiles, tc.wantNone)
			}
			if spec.Image != "busybox" || spec.TaskID != task.ID {
				t.Errorf("spec %+v lost the task's image or ID", spec)
			}
		})
	}
}

// A task's memory reservation is its container's soft limit, clamped to
// its memory limit: a service stored before the two were tied may reserve
// more than its limit, and the runtime refuses such a container.
func TestSoftLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lim, res int64
		want     int64
	}{
		{"none", 0, 0, 0},
		{"reservation only", 0, 32 << 20, 32 << 20},
		{"below the limit", 64 << 20, 32 << 20, 32 << 20},
		{"equal to the limit", 64 << 20, 64 << 20, 64 << 20},
		{"stored above the limit: clamped", 64 << 20, 128 << 20, 64 << 20},
		{"negative: none", 0, -1, 0},
	} {
		r := api.ResourceRequirements{Limits: api.Resources{MemoryBytes: tc.lim}, Reservations: api.Resources{MemoryBytes: tc.res}}
		if got := softLimit(r); got != tc.want {
			t.Errorf("%s: softLimit = %d, want %d", tc.name, got, tc.want)
		}
	}
}
