package scheduler_test

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// A host-mode published port is a node resource (as in Swarm): no node
// takes two tasks holding the same port, so a service with more replicas
// than nodes leaves the rest pending, saying why.
func TestHostModePortOneTaskPerNode(t *testing.T) {
	hostPort := []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}
	cases := []struct {
		name     string
		replicas uint64
		ports    []api.PortConfig
		pending  int
		max      int // most tasks of the service on one node
	}{
		{"host mode, 4 on 3 nodes", 4, hostPort, 1, 1},
		{"host mode, 3 on 3 nodes", 3, hostPort, 0, 1},
		{"host mode udp beside tcp is another port", 6, append(append([]api.PortConfig{}, hostPort...),
			api.PortConfig{Published: 8080, Target: 80, Protocol: "udp", Mode: api.PublishHost}), 3, 1},
		{"ingress, 4 on 3 nodes", 4, []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp", Mode: api.PublishIngress}}, 0, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(t, "n1", "n2", "n3")
			sp := testSpec("web", tc.replicas)
			sp.Ports = tc.ports
			s := c.CreateService(sp)
			convergeWithin(t, c, s.ID, tc.max)
			p := pending(c, s.ID)
			if len(p) != tc.pending {
				t.Fatalf("pending %q, want %d", p, tc.pending)
			}
			want := "no suitable node (3 nodes with host-mode port 8080/tcp already in use)"
			for _, m := range p {
				if m != want {
					t.Fatalf("pending message %q, want %q", m, want)
				}
			}
			if tc.pending == 0 {
				checkSlots(t, c, s.ID)
			}
		})
	}
}

// Scaling down to what fits places the pending task's slot away and stops
// nothing that runs; a node added later takes the pending task.
func TestHostModePortScaleAndNewNode(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("web", 4)
	sp.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}
	s := c.CreateService(sp)
	convergeWithin(t, c, s.ID, 1)
	before := activeIDs(c, s.ID)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 3 })
	convergeWithin(t, c, s.ID, 1)
	if p := pending(c, s.ID); len(p) != 0 {
		t.Fatalf("pending after scaling to 3: %q", p)
	}
	if got := activeIDs(c, s.ID); len(got) != 3 || got[0] != before[0] || got[1] != before[1] || got[2] != before[2] {
		t.Fatalf("tasks changed: %v, were %v", got, before)
	}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 4 })
	convergeWithin(t, c, s.ID, 1)
	c.AddNode("n4", nil)
	convergeWithin(t, c, s.ID, 1)
	if p := pending(c, s.ID); len(p) != 0 {
		t.Fatalf("pending with a 4th node: %q", p)
	}
	if got := spreadOf(c, s.ID, "n1", "n2", "n3", "n4"); got != "n1=1 n2=1 n3=1 n4=1" {
		t.Fatalf("spread %s", got)
	}
}

// A start-first update of a host-mode service cannot run the new task
// beside the old one: it goes stop-first and completes.
func TestHostModePortStartFirstUpdate(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("web", 3)
	sp.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}
	sp.UpdateConfig.Order = api.OrderStartFirst
	s := c.CreateService(sp)
	convergeWithin(t, c, s.ID, 1)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
	convergeWithin(t, c, s.ID, 1)
	svc := c.Services[s.ID]
	if svc.UpdateStatus == nil || svc.UpdateStatus.State != api.UpdateCompleted {
		t.Fatalf("update status %+v", svc.UpdateStatus)
	}
	for _, tk := range c.Active(s.ID) {
		if tk.Spec.Image != "img:2" || tk.State != api.TaskRunning {
			t.Fatalf("task %s: %s %s", tk.ID, tk.Spec.Image, tk.State)
		}
	}
}
