package netplan

import (
	"reflect"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestServesTraffic: a task is a backend only while it runs with an
// address and, with a health check, is healthy (Docker's rule: a task that
// may not listen yet gets no connections).
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
		tk := &api.Task{ID: "t1", State: tt.state, DesiredState: api.TaskRunning, IP: tt.ip, Health: tt.health}
		if got := ServesTraffic(tk); got != tt.want {
			t.Errorf("%s: ServesTraffic = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestTaskIPs: a task reported before it had several networks has one IP,
// which is its address on its first network.
func TestTaskIPs(t *testing.T) {
	multi := &api.Task{IP: "10.42.1.2", IPs: map[string]string{api.DefaultNetwork: "10.42.1.2", "back": "10.50.1.2"}}
	if got := TaskIPs(multi); !reflect.DeepEqual(got, multi.IPs) {
		t.Errorf("IPs reported: %v", got)
	}
	old := &api.Task{IP: "10.50.1.3", Spec: api.ServiceSpec{Networks: []string{"back", api.DefaultNetwork}}}
	if got, want := TaskIPs(old), map[string]string{"back": "10.50.1.3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("IP only: %v, want %v", got, want)
	}
	if got := TaskIPs(&api.Task{}); got != nil {
		t.Errorf("no address: %v", got)
	}
}

// TestEncryptedNetworks: only encrypted networks other than the default
// one are routed through WireGuard, in the order given; one with a broken
// subnet is left out.
func TestEncryptedNetworks(t *testing.T) {
	nets := []*api.Network{
		{Name: api.DefaultNetwork, Subnet: "10.42.0.0/16", Encrypted: true},
		{Name: "plain", Subnet: "10.50.0.0/16"},
		{Name: "b", Subnet: "10.52.0.0/16", Encrypted: true},
		{Name: "broken", Subnet: "nonsense", Encrypted: true},
		{Name: "a", Subnet: "10.51.0.0/16", Encrypted: true},
	}
	want := []*api.Network{nets[2], nets[4]}
	if got := EncryptedNetworks(nets); !reflect.DeepEqual(got, want) {
		t.Errorf("EncryptedNetworks = %v, want %v", got, want)
	}
	if got := EncryptedNetworks(nil); got != nil {
		t.Errorf("no networks: %v", got)
	}
}

// TestTrafficInternalViews: the DNS view of an --internal network says so,
// for the server to forward none of its containers' questions upstream
// (dns.View.Internal); other networks' views do not.
func TestTrafficInternalViews(t *testing.T) {
	st := State{Networks: []*api.Network{
		{Name: api.DefaultNetwork, Subnet: "10.42.0.0/16"},
		{Name: "vault", Subnet: "10.60.0.0/16", Internal: true},
	}}
	_, views, _ := Traffic(st, map[string]bool{}, "n1")
	if views["vault"].Internal != true || views[api.DefaultNetwork].Internal != false {
		t.Fatalf("internal: vault %v, default %v; want true, false", views["vault"].Internal, views[api.DefaultNetwork].Internal)
	}
}

// TestTrafficPeerPorts: the other nodes' advertised cluster and gossip
// ports reach the load balancer (lb.State.PeerPorts), sorted, each once;
// this node's own are Config's and not among them.
func TestTrafficPeerPorts(t *testing.T) {
	st := State{Nodes: []*api.Node{
		{ID: "n3", Addr: "10.213.1.13", ClusterPort: 2400, GossipPort: 8000},
		{ID: "n1", Addr: "10.213.1.11", ClusterPort: 3000, GossipPort: 3001},
		{ID: "n2", Addr: "10.213.1.12", ClusterPort: 2377, GossipPort: 7946},
		{ID: "n4", Addr: "10.213.1.14", ClusterPort: 2400, GossipPort: 7946},
	}}
	lbst, _, _ := Traffic(st, map[string]bool{}, "n1")
	if want := []int{2377, 2400, 7946, 8000}; !slices.Equal(lbst.PeerPorts, want) {
		t.Fatalf("PeerPorts %v, want %v", lbst.PeerPorts, want)
	}
}
