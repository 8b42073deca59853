package netplan

import (
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/lb/dns"
)

// TestTrafficEndpointModeAndAliases: a dnsrr service's name answers with
// its tasks' addresses and gets no load-balancer rule (only its host-mode
// ports); an alias answers like the name, on its own network only, and
// tasks.ALIAS like tasks.NAME (Docker's libnetwork registers both).
func TestTrafficEndpointModeAndAliases(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nodes := []*api.Node{{ID: "self", Addr: "192.168.0.1"}, {ID: "n2", Addr: "192.168.0.2"}}
	networks := []*api.Network{
		{ID: "d", Name: api.DefaultNetwork, Subnet: "10.42.0.0/16"},
		{ID: "b", Name: "back", Subnet: "10.50.0.0/16", VNI: 0x1001},
	}
	task := func(id string, s *api.Service, node string, ips map[string]string) *api.Task {
		return &api.Task{ID: id, ServiceID: s.ID, NodeID: node, State: api.TaskRunning, DesiredState: api.TaskRunning,
			IP: ips[api.SpecNetworks(s.Spec)[0]], IPs: ips, Spec: s.Spec}
	}
	ips := func(ss ...string) []net.IP {
		var out []net.IP
		for _, s := range ss {
			out = append(out, mustIP(s))
		}
		return out
	}
	rr := &api.Service{ID: "s-rr", Name: "rr", CreatedAt: t0,
		Spec: api.ServiceSpec{EndpointMode: api.EndpointDNSRR}}
	// A VIP left in the record (an older state) is not used under dnsrr,
	// nor is an ingress port: only the host-mode one is programmed.
	rrPorts := &api.Service{ID: "s-rrp", Name: "rrp", VIP: "10.43.0.7", CreatedAt: t0,
		Spec: api.ServiceSpec{EndpointMode: api.EndpointDNSRR, Ports: []api.PortConfig{
			{Published: 8080, Target: 80, Mode: api.PublishHost}, {Published: 8081, Target: 81}}}}
	web := &api.Service{ID: "s-web", Name: "web", VIP: "10.43.0.2", VIPs: map[string]string{"back": "10.50.128.2"}, CreatedAt: t0,
		Spec: api.ServiceSpec{Networks: []string{api.DefaultNetwork, "back"}, NetworkAliases: map[string][]string{"back": {"www", "site"}}}}
	rrBack := &api.Service{ID: "s-rrb", Name: "rrb", CreatedAt: t0,
		Spec: api.ServiceSpec{EndpointMode: api.EndpointDNSRR, Networks: []string{"back"}, NetworkAliases: map[string][]string{"back": {"db"}}}}
	// An older state may hold clashes the cluster now refuses: a name beats
	// an alias, an older service's alias a newer one's.
	www := &api.Service{ID: "s-www", Name: "www", VIP: "10.43.0.5", VIPs: map[string]string{"back": "10.50.128.5"}, CreatedAt: t0.Add(time.Second),
		Spec: api.ServiceSpec{Networks: []string{"back"}, NetworkAliases: map[string][]string{"back": {"site"}}}}

	for _, tc := range []struct {
		name string
		st   State
		want []string
		dns  map[string]dns.Records
	}{{
		name: "dnsrr: the name is the tasks' addresses, no rule",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{rr}, Tasks: map[string][]*api.Task{
			"s-rr": {task("t1", rr, "self", map[string]string{"default": "10.42.1.2"}), task("t2", rr, "n2", map[string]string{"default": "10.42.2.2"})}}},
		dns: map[string]dns.Records{api.DefaultNetwork: {"rr": ips("10.42.1.2", "10.42.2.2"), "tasks.rr": ips("10.42.1.2", "10.42.2.2")}, "back": {}},
	}, {
		name: "dnsrr without running tasks: the name is ours and empty",
		st:   State{Nodes: nodes, Networks: networks, Services: []*api.Service{rr}},
		dns:  map[string]dns.Records{api.DefaultNetwork: {"rr": nil, "tasks.rr": nil}},
	}, {
		name: "dnsrr with a host-mode port: that port only, no VIP",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{rrPorts}, Tasks: map[string][]*api.Task{
			"s-rrp": {task("t1", rrPorts, "self", map[string]string{"default": "10.42.1.3"})}}},
		want: []string{"rrp@default vip=<nil> ports=1 [10.42.1.3*]"},
		dns:  map[string]dns.Records{api.DefaultNetwork: {"rrp": ips("10.42.1.3"), "tasks.rrp": ips("10.42.1.3")}},
	}, {
		name: "aliases answer with the VIP on their network only",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {task("t1", web, "n2", map[string]string{"default": "10.42.2.4", "back": "10.50.1.4"})}}},
		want: []string{"web@default vip=10.43.0.2 ports=0 [10.42.2.4]", "web@back@back vip=10.50.128.2 ports=0 [10.50.1.4]"},
		dns: map[string]dns.Records{
			api.DefaultNetwork: {"web": ips("10.43.0.2"), "tasks.web": ips("10.42.2.4")},
			"back": {"web": ips("10.50.128.2"), "tasks.web": ips("10.50.1.4"),
				"www": ips("10.50.128.2"), "site": ips("10.50.128.2"),
				"tasks.www": ips("10.50.1.4"), "tasks.site": ips("10.50.1.4")},
		},
	}, {
		name: "an alias of a dnsrr service answers with the tasks' addresses",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{rrBack}, Tasks: map[string][]*api.Task{
			"s-rrb": {task("t1", rrBack, "n2", map[string]string{"back": "10.50.1.8"})}}},
		dns: map[string]dns.Records{
			api.DefaultNetwork: {},
			"back":             {"rrb": ips("10.50.1.8"), "tasks.rrb": ips("10.50.1.8"), "db": ips("10.50.1.8"), "tasks.db": ips("10.50.1.8")},
		},
	}, {
		name: "clashes of an older state: a name beats an alias, the older alias the newer",
		st:   State{Nodes: nodes, Networks: networks, Services: []*api.Service{www, web}},
		want: []string{"web@default vip=10.43.0.2 ports=0 []", "web@back@back vip=10.50.128.2 ports=0 []",
			"www@back vip=10.50.128.5 ports=0 []"},
		dns: map[string]dns.Records{"back": {"web": ips("10.50.128.2"), "tasks.web": nil, "www": ips("10.50.128.5"),
			"tasks.www": nil, "site": ips("10.50.128.2"), "tasks.site": nil}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			state, views, _ := Traffic(tc.st, map[string]struct{}{"self": {}, "n2": {}}, "self")
			if got := trafficSummary(state); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("services:\n got %q\nwant %q", got, tc.want)
			}
			for network, want := range tc.dns {
				if got := views[network].Records; !reflect.DeepEqual(got, want) {
					t.Errorf("DNS records on %s:\n got %v\nwant %v", network, got, want)
				}
			}
		})
	}
}
