package placement

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestHostPortsOf(t *testing.T) {
	spec := api.ServiceSpec{Ports: []api.PortConfig{
		{Published: 8080, Target: 80, Protocol: "tcp", Mode: api.PublishHost},
		{Published: 53, Target: 53, Protocol: "UDP", Mode: api.PublishHost},
		{Published: 81, Target: 80, Mode: api.PublishHost}, // tcp by default
		{Published: 9090, Target: 90, Protocol: "tcp"},     // mesh
		{Published: 9091, Target: 90, Protocol: "tcp", Mode: api.PublishIngress},
	}}
	want := []HostPort{"8080/tcp", "53/udp", "81/tcp"}
	if got := HostPortsOf(&spec); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := HostPortsOf(&api.ServiceSpec{}); got != nil {
		t.Fatalf("no ports: got %v", got)
	}
}

func TestHostPortFilter(t *testing.T) {
	held := &NodeInfo{}
	held.HoldPorts([]HostPort{"8080/tcp"})
	cases := []struct {
		name   string
		node   *NodeInfo
		want   []HostPort
		ok     bool
		reason string
	}{
		{"free node", &NodeInfo{}, []HostPort{"8080/tcp"}, true, ""},
		{"port held", held, []HostPort{"8080/tcp"}, false, "with host-mode port 8080/tcp already in use"},
		{"other protocol", held, []HostPort{"8080/udp"}, true, ""},
		{"second port held", held, []HostPort{"80/tcp", "8080/tcp"}, false, "with host-mode port 8080/tcp already in use"},
		{"no host ports asked", held, nil, true, ""},
	}
	for _, tc := range cases {
		ok, reason := HostPortFilter{}.Check(tc.node, &Request{HostPorts: tc.want})
		if ok != tc.ok || reason != tc.reason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, ok, reason, tc.ok, tc.reason)
		}
	}
	nodes := []*NodeInfo{held, held, {Node: api.Node{Status: api.NodeDown}}}
	nodes[2].HoldPorts([]HostPort{"8080/tcp"})
	for _, n := range nodes[:2] {
		n.Node.Status = api.NodeReady
	}
	want := "no suitable node (1 node not ready, 2 nodes with host-mode port 8080/tcp already in use)"
	if got := DefaultPipeline().Explain(nodes, &Request{HostPorts: []HostPort{"8080/tcp"}}); got != want {
		t.Fatalf("explain %q, want %q", got, want)
	}
}
